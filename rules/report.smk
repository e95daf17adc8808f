# The run's self-contained HTML report: config, data, training, metrics, confusion, worst and demo images, artifacts.


rule write_report:
    input:
        table=CHECK_TABLE,
        annotations=ANNOTATIONS,
        splits=SPLIT_LISTS,
        stats=DATASET_STATS,
        stats_plot=f"{R}/dataset/stats.png",
        ir_check=IR_CHECK,
        logs=[stop_log(end) for end in EPOCHS],
        deploy=DEPLOY_INFO,
        metrics=METRICS,
        curves=f"{R}/evaluate/pr_curves.png",
        f1_curves=f"{R}/evaluate/f1_curves.png",
        confusion=f"{R}/evaluate/confusion.csv",
        confusion_plot=f"{R}/evaluate/confusion.png",
        ranking=f"{R}/evaluate/worst_images.csv",
        worst=WORST_INDEX,
        worst_dir=f"{R}/evaluate/worst",
        demo=DEMO_INDEX,
        manifest=MANIFEST,
        benchmarks=STAGE_BENCHMARKS,
    output:
        html=REPORT,
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{R}/benchmarks/report.tsv"
    conda:
        "../envs/mxnet.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("report"),
        config=json.dumps(config, sort_keys=True),
        inputs=named_inputs,
    message:
        "Writing the run report {output.html}"
    shell:
        stage(
            "report",
            "--inputs {params.inputs:q} --config {params.config:q} --out {output.html}",
        )
