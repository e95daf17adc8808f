# check -> split (and dataset_stats) -> pack: from the user's export (VOC, .lst, COCO, YOLO, CVAT, Label Studio) to
# RecordIO files.


rule check:
    input:
        check_inputs(config["dataset"]),
        check_inputs(config["val_dataset"]),
    output:
        annotations=ANNOTATIONS,
        table=CHECK_TABLE,
        splits=CHECK_SPLITS,
    log:
        main=f"{LOGS}/check.log",
        problems=f"{LOGS}/check_problems.csv",
    benchmark:
        f"{R}/benchmarks/check.tsv"
    conda:
        conda_file("check")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=stage_code("check"),
        dataset=configured("dataset"),
        val_dataset=option("--val-dataset", config["val_dataset"]),
        dataset_format=config["dataset_format"],
        dataset_images=option("--dataset-images", config["dataset_images"]),
        lst_root=option("--lst-root", config.get("lst_root")),
        classes=CLASSES_JSON,
        class_map=json.dumps(config["class_map"]),
        keep_empty=switch("keep-empty-images", config["keep_empty_images"]),
        skip_bad=switch("skip-bad-files", config["skip_bad_files"]),
        unverified=config["unverified_annotations"],
        max_pixels=config["max_image_pixels"],
    message:
        "Checking every annotation and image of {params.dataset}"
    shell:
        stage(
            "check",
            "--dataset {params.dataset:q} {params.val_dataset} {params.lst_root} --dataset-format {params.dataset_format}"
            " {params.dataset_images} --classes {params.classes:q}"
            " --class-map {params.class_map:q} {params.keep_empty}"
            " {params.skip_bad} --unverified-annotations {params.unverified} --max-image-pixels {params.max_pixels}"
            " --out {output.annotations} --splits {output.splits} --table {output.table} --problems-log {log.problems}",
        )


rule split:
    input:
        annotations=ANNOTATIONS,
        splits=CHECK_SPLITS,
    output:
        train=SPLIT_LISTS[0],
        val=SPLIT_LISTS[1],
        train_records=SPLIT_RECORDS[0],
        val_records=SPLIT_RECORDS[1],
    log:
        f"{LOGS}/split.log",
    benchmark:
        f"{R}/benchmarks/split.tsv"
    conda:
        conda_file("split")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=stage_code("split"),
        val_fraction=config["val_fraction"],
        seed=config["seed"],
    message:
        "Splitting the checked images into train and val"
    shell:
        stage(
            "split",
            "--annotations {input.annotations} --splits {input.splits}"
            " --val-fraction {params.val_fraction} --seed {params.seed} --train-out {output.train}"
            " --val-out {output.val} --train-records {output.train_records}"
            " --val-records {output.val_records}",
        )


rule pack_split:
    input:
        records=f"{R}/split/{{split}}.json",
    output:
        multiext(f"{R}/pack/{{split}}", ".rec", ".idx", ".lst"),
    log:
        f"{LOGS}/pack_{{split}}.log",
    benchmark:
        f"{R}/benchmarks/pack_{{split}}.tsv"
    wildcard_constraints:
        split="train|val",
    conda:
        conda_file("pack")
    threads: 2
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=stage_code("pack"),
        prefix=f"{R}/pack/{{split}}",
        max_side=config["pack_max_side"],
        quality=config["jpeg_quality"],
        max_pixels=config["max_image_pixels"],
    message:
        "Packing the {wildcards.split} images into RecordIO"
    shell:
        stage(
            "pack",
            "--records {input.records} --out-prefix {params.prefix} --max-side {params.max_side}"
            " --jpeg-quality {params.quality} --max-image-pixels {params.max_pixels} --processes {threads}",
        )


rule dataset_stats:
    input:
        annotations=ANNOTATIONS,
        train=SPLIT_LISTS[0],
        val=SPLIT_LISTS[1],
    output:
        stats=DATASET_STATS,
        boxes=f"{R}/dataset_stats/boxes.csv",
        plot=f"{R}/dataset_stats/stats.png",
    log:
        f"{LOGS}/dataset_stats.log",
    benchmark:
        f"{R}/benchmarks/dataset_stats.tsv"
    conda:
        conda_file("dataset_stats")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("dataset_stats"),
        classes=CLASSES_JSON,
        network=config["network"],
        data_shape=config["data_shape"],
        out_dir=folder_of_output("stats"),
    message:
        "Dataset statistics per split and anchor coverage of the {params.network} network"
    shell:
        stage(
            "dataset_stats",
            "--annotations {input.annotations} --train {input.train} --val {input.val}"
            " --classes {params.classes:q} --network {params.network} --data-shape {params.data_shape}"
            " --out-dir {params.out_dir}",
        )
