"""Analysis: fan rules, tensor statistics, scheme identification, unit checks."""
