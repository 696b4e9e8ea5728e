"""Services: the behaviour every protocol adapter calls (one implementation each)."""
