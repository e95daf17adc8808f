"""Stage logic of the deeplens-ssd workflow; each stage has a thin `python -m workflow.<stage>` entry point."""
