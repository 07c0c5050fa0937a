"""The ground floor: file writing every room shares (atomic writes, image files). Imports
nothing of sg2_container but `errors`, and no torch."""
