"""The fused topology: a trading node runs feeds, detector, risk gate and executor in one
process."""
