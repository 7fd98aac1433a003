"""`python -m egakit` is the `ega` command."""
from egakit.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
