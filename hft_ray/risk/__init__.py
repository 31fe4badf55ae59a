"""Risk: the singleton that approves, clips or rejects every order."""
