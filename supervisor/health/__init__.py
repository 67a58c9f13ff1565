"""`status` and `doctor`: the signals read, the health table that judges them."""
