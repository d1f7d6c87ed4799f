"""`python -m serving.cli ...` runs the `creditline` command."""

from serving.cli import main

if __name__ == "__main__":
    main()
