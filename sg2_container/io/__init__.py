"""The ground floor: helpers every room shares (atomic writes, image files and grids, stop
signals). Imports nothing of sg2_container but `errors`, and no torch."""
