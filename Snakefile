# deeplens-ssd: from a LabelImg (PASCAL VOC) folder to an SSD detector and an OpenVINO FP16 IR for AWS DeepLens.
# Run: snakemake --cores 4 deeplens_artifacts        (config.yaml, or --configfile yours.yaml)
# Stage logic lives in workflow/ (Python); each area's rules in rules/*.smk.


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
    check,
    split,
    pack,
    train,
    evaluate,
    demo,
    deploy,
    optimize,
    quantize,
    deeplens_artifacts,
    report,
    prelabel,


rule check:
    input:
        ANNOTATIONS,


rule split:
    input:
        SPLIT_LISTS,
        DATASET_STATS,


rule pack:
    input:
        PACKED,


rule train:
    input:
        stop_log(EPOCHS[-1]),


rule evaluate:
    input:
        METRICS,


rule demo:
    input:
        DEMO_INDEX,


rule deploy:
    input:
        DEPLOY_INFO,


rule optimize:
    input:
        IR_XML,


rule quantize:
    input:
        INT8_XML,


rule deeplens_artifacts:
    default_target: True
    input:
        MANIFEST,
        REPORT,


rule report:
    input:
        REPORT,


rule prelabel:
    input:
        PRELABEL_MANIFEST,
