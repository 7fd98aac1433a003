"""Research studies run on egakit (not part of the installed library): ``python -m studies.<name>``."""
