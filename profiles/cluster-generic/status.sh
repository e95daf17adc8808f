#!/bin/sh
# Job status for Snakemake's cluster-generic executor on Slurm: prints running, success or failed for job id $1.
# A job not yet in the accounting database (just submitted) counts as running.
state=$(sacct --jobs "$1" --allocations --noheader --parsable2 --format=State 2>/dev/null | head -n 1)
case "${state%% *}" in
    COMPLETED) echo success ;;
    FAILED | CANCELLED* | TIMEOUT | OUT_OF_MEMORY | NODE_FAIL | PREEMPTED | BOOT_FAIL | DEADLINE) echo failed ;;
    *) echo running ;;
esac
