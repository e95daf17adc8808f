"""Code that runs in Snakemake's own interpreter (the Snakefile, environments, GPU check, sweeps): the standard
library only, and PyYAML, which Snakemake brings."""
