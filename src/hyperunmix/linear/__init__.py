"""Classical linear unmixing: counting (HySime), endmember extraction, abundance solvers."""
