# INT8 IR for CPU targets (int8_ir: true): the deploy model quantized by NNCF within int8_max_map_drop of the val
# mAP (workflow/quantize.py), then proven against MXNet by verify_ir and shipped beside the IR.


rule quantize:
    input:
        deploy=DEPLOY_INFO,
        train=TRAIN_REC,
        val=VAL_REC,
    output:
        xml=INT8_IR[0],
        bin=INT8_IR[1],
        contract=INT8_IR[2],
        summary=f"{INT8_DIR}/quantize.json",
    log:
        main=f"{LOGS}/quantize.log",
        model_optimizer=f"{LOGS}/quantize_model_optimizer.log",
    benchmark:
        f"{R}/benchmarks/quantize.tsv"
    conda:
        conda_file("quantize")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        code=stage_code("quantize"),
        max_drop=config["int8_max_map_drop"],
        iou=config["iou_threshold"],
        color=config["ir_color"],
        mean_inside=switch("mean-in-ir", config["ir_mean_inside"]),
        out_dir=folder_of_output("xml"),
    message:
        "Quantizing the deploy model to an INT8 IR for CPU targets (val mAP drop at most {params.max_drop})"
    shell:
        stage(
            "quantize",
            "--deploy {input.deploy} --train-rec {input.train} --val-rec {input.val}"
            " --max-map-drop {params.max_drop} --iou-threshold {params.iou} --color {params.color}"
            " {params.mean_inside} --out-dir {params.out_dir} --model-name model_int8"
            " --summary {output.summary} --log {log.model_optimizer}",
        )
