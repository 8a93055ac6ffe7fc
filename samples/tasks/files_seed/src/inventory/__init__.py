"""Read stock lists and print totals per warehouse."""
