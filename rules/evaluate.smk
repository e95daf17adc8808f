# evaluate (VOC mAP, confusion with background and the worst images of the deploy model on the whole val set)
# and demo (spot-check images).
WORST_INDEX = f"{R}/evaluate/worst_images.json"


rule evaluate:
    input:
        deploy=DEPLOY_INFO,
        val=VAL_REC,
        names=VAL_LST,
        logs=[segment_log(end) for end in EPOCHS],
    output:
        metrics=METRICS,
        table=f"{R}/evaluate/per_class.csv",
        curves=f"{R}/evaluate/pr_curves.png",
        f1_curves=f"{R}/evaluate/f1_curves.png",
        confusion=f"{R}/evaluate/confusion.csv",
        confusion_plot=f"{R}/evaluate/confusion.png",
        ranking=f"{R}/evaluate/worst_images.csv",
        worst=WORST_INDEX,
        worst_dir=directory(f"{R}/evaluate/worst"),
    log:
        f"{LOGS}/evaluate.log",
    benchmark:
        f"{R}/benchmarks/evaluate.tsv"
    conda:
        conda_file("evaluate")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=stage_code("evaluate"),
        out_dir=folder_of_output("metrics"),
        iou=config["iou_threshold"],
        difficult=switch("use-difficult", config["use_difficult"]),
        confusion=config["confusion_threshold"],
        worst=config["worst_images"],
        resamples=config["bootstrap_resamples"],
        train_dirs=",".join(segment_dir(end) for end in EPOCHS),
    message:
        "Evaluating the deploy model on every val image"
    shell:
        stage(
            "evaluate",
            "--deploy {input.deploy} --val-rec {input.val} --val-lst {input.names} --iou-threshold {params.iou}"
            " {params.difficult} --confusion-threshold {params.confusion}"
            " --worst-images {params.worst} --bootstrap-resamples {params.resamples}"
            " --train-dirs {params.train_dirs} --out-dir {params.out_dir}",
        )


rule demo:
    input:
        deploy=DEPLOY_INFO,
        annotations=ANNOTATIONS,
        ids=f"{R}/split/val.txt",
    output:
        index=DEMO_INDEX,
    log:
        f"{LOGS}/demo.log",
    benchmark:
        f"{R}/benchmarks/demo.tsv"
    conda:
        conda_file("demo")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=stage_code("demo"),
        out_dir=folder_of_output("index"),
        images=config["demo_images"],
        threshold=config["demo_threshold"],
    message:
        "Drawing detections on {params.images} val images"
    shell:
        stage(
            "demo",
            "--deploy {input.deploy} --annotations {input.annotations} --ids {input.ids}"
            " --count {params.images} --threshold {params.threshold} --out-dir {params.out_dir}"
            " --index {output.index}",
        )
