# annotate-check -> split -> pack: from the user's VOC folder (or .lst list) to RecordIO files.
import shlex

from workflow import voc

# Each split's checked records, in list order: a pack job reads only its own split's, so a change that leaves
# them as they were (same checksum) does not repack that split.
SPLIT_RECORDS = [f"{R}/split/train.json", f"{R}/split/val.json"]


def check_inputs(dataset):
    """Every file the check reads from a dataset (a VOC folder, or a .lst and the images it names), so that
    adding or editing one reruns the check."""
    if dataset and voc.is_lst(dataset):
        return [dataset] + voc.lst_images(dataset, config.get("lst_root"))
    return dataset_files(dataset)


def option(flag, value):
    return f"{flag} {shlex.quote(value)}" if value else ""


rule annotate_check:
    message:
        "Checking every annotation and image of {params.dataset}"
    input:
        check_inputs(config["dataset"]),
        check_inputs(config["val_dataset"]),
        lock=LOCK["mxnet"],
        code=stage_code("check", "voc", "images"),
    output:
        annotations=ANNOTATIONS,
        table=CHECK_TABLE,
    params:
        dataset=config["dataset"],
        val_dataset=option("--val-dataset", config["val_dataset"]),
        lst_root=option("--lst-root", config.get("lst_root")),
        classes=CLASSES_JSON,
        class_map=json.dumps(config["class_map"]),
        keep_empty=yes_no(config["keep_empty_images"]),
        skip_bad=yes_no(config["skip_bad_files"]),
        max_pixels=config["max_image_pixels"],
    log:
        f"{LOGS}/check.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/mxnet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {MXNET} python -m workflow.check --dataset {params.dataset:q} {params.val_dataset} {params.lst_root}"
        " --classes {params.classes:q} --class-map {params.class_map:q} --keep-empty-images {params.keep_empty}"
        " --skip-bad-files {params.skip_bad} --max-image-pixels {params.max_pixels}"
        " --out {output.annotations} --table {output.table} 2>&1 | tee {log} >&2"


rule split_data:
    message:
        "Splitting the checked images into train and val"
    input:
        annotations=ANNOTATIONS,
        lock=LOCK["mxnet"],
        code=stage_code("split"),
    output:
        train=SPLIT_LISTS[0],
        val=SPLIT_LISTS[1],
        train_records=SPLIT_RECORDS[0],
        val_records=SPLIT_RECORDS[1],
    params:
        dataset=config["dataset"],
        val_fraction=config["val_fraction"],
        seed=config["seed"],
    log:
        f"{LOGS}/split.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/mxnet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {MXNET} python -m workflow.split --annotations {input.annotations} --dataset {params.dataset:q}"
        " --val-fraction {params.val_fraction} --seed {params.seed}"
        " --train-out {output.train} --val-out {output.val} --train-records {output.train_records}"
        " --val-records {output.val_records} 2>&1 | tee {log} >&2"


rule pack_split:
    message:
        "Packing the {wildcards.split} images into RecordIO"
    input:
        records=f"{R}/split/{{split}}.json",
        lock=LOCK["mxnet"],
        code=stage_code("pack", "images"),
    output:
        multiext(f"{R}/pack/{{split}}", ".rec", ".idx", ".lst"),
    wildcard_constraints:
        split="train|val",
    params:
        prefix=f"{R}/pack/{{split}}",
        max_side=config["pack_max_side"],
        quality=config["jpeg_quality"],
        max_pixels=config["max_image_pixels"],
    log:
        f"{LOGS}/pack_{{split}}.log",
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/mxnet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {MXNET} python -m workflow.pack --records {input.records}"
        " --out-prefix {params.prefix} --max-side {params.max_side} --jpeg-quality {params.quality}"
        " --max-image-pixels {params.max_pixels} --processes {threads} 2>&1 | tee {log} >&2"


rule dataset_stats:
    message:
        "Dataset statistics per split and anchor coverage of the {params.network} network"
    input:
        annotations=ANNOTATIONS,
        train=SPLIT_LISTS[0],
        val=SPLIT_LISTS[1],
        lock=LOCK["mxnet"],
        code=stage_code("dataset_stats", "networks"),
    output:
        stats=DATASET_STATS,
        boxes=f"{R}/dataset/boxes.csv",
        plot=f"{R}/dataset/stats.png",
    params:
        classes=",".join(config["classes"]),
        network=config["network"],
        data_shape=config["data_shape"],
        out_dir=f"{R}/dataset",
    log:
        f"{LOGS}/dataset_stats.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/mxnet.yaml"
    shell:
        "OMP_NUM_THREADS={threads} {MXNET} python -m workflow.dataset_stats --annotations {input.annotations}"
        " --train {input.train} --val {input.val} --classes {params.classes:q} --network {params.network}"
        " --data-shape {params.data_shape} --out-dir {params.out_dir} 2>&1 | tee {log} >&2"
