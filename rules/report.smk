# The run's self-contained HTML report: config, data, training, metrics, confusion, worst and demo images, artifacts.


rule report:
    input:
        table=CHECK_TABLE,
        annotations=ANNOTATIONS,
        splits=SPLIT_LISTS,
        stats=DATASET_STATS,
        stats_plot=rules.dataset_stats.output.plot,
        ir_check=IR_CHECK,
        logs=[segment_log(end) for end in EPOCHS],
        deploy=DEPLOY_INFO,
        metrics=METRICS,
        curves=rules.evaluate.output.curves,
        f1_curves=rules.evaluate.output.f1_curves,
        confusion=rules.evaluate.output.confusion,
        confusion_plot=rules.evaluate.output.confusion_plot,
        ranking=rules.evaluate.output.ranking,
        worst=WORST_INDEX,
        worst_dir=rules.evaluate.output.worst_dir,
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
        conda_file("report")
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
