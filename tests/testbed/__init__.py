"""The project's own test bed: legacy MS5.0 databases to clone, a server of each TimescaleDB edition, and the
real conditions that findings are about. Only tests/ uses it; the suites' fixtures live in fixtures/."""
