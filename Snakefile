# deeplens-ssd: from a LabelImg (PASCAL VOC) folder to an SSD detector and the models an edge device runs.
# Run: snakemake --cores 4 deeplens_artifacts        (config.yaml, or --configfile yours.yaml)
# Every stage is a rule named after its module workflow/<stage>.py (the table: workflow/orchestrator/stages.py),
# and any of them is a target: snakemake --cores 4 evaluate. Each area's rules are in rules/*.smk.


configfile: f"{workflow.basedir}/config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/quantize.smk"
include: "rules/deeplens.smk"
include: "rules/deploy.smk"
include: "rules/web.smk"
include: "rules/report.smk"
include: "rules/prelabel.smk"


localrules:
    deeplens_artifacts,
    pack,
    train,


# The whole run: the artifacts and the report.
rule deeplens_artifacts:
    default_target: True
    input:
        MANIFEST,
        REPORT,


# The stages with a job per split or per training segment, as targets: both splits packed; every segment trained.
rule pack:
    input:
        PACKED,


rule train:
    input:
        segment_log(EPOCHS[-1]),
