# The run's self-contained HTML report: config, data, training, metrics, confusion, worst and demo images, artifacts.


rule write_report:
    input:
        table=CHECK_TABLE,
        annotations=ANNOTATIONS,
        splits=SPLIT_LISTS,
        stats=DATASET_STATS,
        stats_plot=rules.dataset_stats.output.plot,
        ir_check=IR_CHECK,
        logs=[stop_log(end) for end in EPOCHS],
        deploy=DEPLOY_INFO,
        metrics=METRICS,
        curves=rules.evaluate_model.output.curves,
        f1_curves=rules.evaluate_model.output.f1_curves,
        confusion=rules.evaluate_model.output.confusion,
        confusion_plot=rules.evaluate_model.output.confusion_plot,
        ranking=rules.evaluate_model.output.ranking,
        worst=WORST_INDEX,
        worst_dir=rules.evaluate_model.output.worst_dir,
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
