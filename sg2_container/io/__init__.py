"""The ground floor: small helpers every room may use (atomic writes, image grids, stop
signals). Imports nothing above sg2_container.errors."""
