"""Detection: the latest books of a shard of symbols, and the opportunities between venues."""
