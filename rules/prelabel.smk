# prelabel: the deployed IR labels the images of `unlabelled` for the labelling tool the dataset came from (LabelImg
# XML, COCO, YOLO or Label Studio predictions), marked unreviewed, ranked by how much a person's check of each is
# expected to help.


rule prelabel:
    input:
        images=unlabelled_images,
        xml=rules.optimize.output.xml,
        bin=rules.optimize.output.bin,
        contract=rules.optimize.output.contract,
        metrics=METRICS,
    output:
        manifest=PRELABEL_MANIFEST,
        labels=directory(PRELABELS) if PRELABEL_FORMAT in ("voc", "yolo") else PRELABELS,
        ranking=f"{R}/prelabel/ranking.csv",
        index=f"{R}/prelabel/index.html",
    log:
        f"{LOGS}/prelabel.log",
    benchmark:
        f"{R}/benchmarks/prelabel.tsv"
    conda:
        conda_file("prelabel")
    threads: 2
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        code=stage_code("prelabel"),
        folder=lambda wildcards: config["unlabelled"],
        classes=CLASSES_JSON,
        format=PRELABEL_FORMAT,
        label_studio_names=json.dumps(config["label_studio_names"]),
        threshold=config["prelabel_threshold"],
        max_pixels=config["max_image_pixels"],
        out_dir=folder_of_output("manifest"),
        cache=f"{R}/prelabel_cache",
    message:
        "Pre-labelling the images of {params.folder} with the IR (score threshold: {params.threshold})"
    shell:
        stage(
            "prelabel",
            "--ir {input.xml} --images {params.folder:q} --classes {params.classes:q} --threshold {params.threshold}"
            " --format {params.format} --label-studio-names {params.label_studio_names:q}"
            " --metrics {input.metrics} --out-dir {params.out_dir} --cache {params.cache} --manifest {output.manifest}",
            variables="OPENCV_IO_MAX_IMAGE_PIXELS={params.max_pixels}",
        )
