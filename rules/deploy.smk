# deploy (inference graph with NMS built in) -> the exports (MXNet 0.12, OpenVINO IR, ONNX, LiteRT), each proven
# against MXNet -> the artifacts folder for the devices.


rule deploy:
    input:
        logs=[segment_log(end) for end in EPOCHS],
    output:
        info=DEPLOY_INFO,
    log:
        f"{LOGS}/deploy.log",
    benchmark:
        f"{R}/benchmarks/deploy.tsv"
    conda:
        conda_file("deploy")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("deploy"),
        train_dirs=",".join(segment_dir(end) for end in EPOCHS),
        epoch=config["deploy_epoch"],
        network=config["network"],
        classes=CLASSES_JSON,
        data_shape=config["data_shape"],
        force_nms=switch("force-nms", config["force_nms"]),
        nms_threshold=config["nms_threshold"],
        nms_topk=config["nms_topk"],
        threshold=config["detection_threshold"],
        out_dir=folder_of_output("info"),
    message:
        f"Exporting the deploy graph (force_nms={config['force_nms']}) of epoch '{{params.epoch}}'"
    shell:
        stage(
            "deploy",
            "--train-dirs {params.train_dirs} --epoch {params.epoch} --network {params.network}"
            " --classes {params.classes:q} --data-shape {params.data_shape} {params.force_nms}"
            " --nms-threshold {params.nms_threshold} --nms-topk {params.nms_topk}"
            " --threshold {params.threshold} --out-dir {params.out_dir} --out {output.info}",
        )


rule export_mxnet012:
    input:
        deploy=DEPLOY_INFO,
        val=VAL_REC,
    output:
        info=f"{MXNET012}/mxnet012.json",
        reference=f"{MXNET012}/reference.npz",
    log:
        f"{LOGS}/export_mxnet012.log",
    benchmark:
        f"{R}/benchmarks/export_mxnet012.tsv"
    conda:
        conda_file("export_mxnet012")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("export_mxnet012"),
        out_dir=folder_of_output("info"),
    message:
        "Writing the deploy model in the form MXNet 0.12 (the DeepLens' version) loads"
    shell:
        stage(
            "export_mxnet012",
            "--deploy {input.deploy} --val-rec {input.val} --out-dir {params.out_dir}",
        )


rule verify_mxnet012:
    input:
        info=rules.export_mxnet012.output.info,
        reference=rules.export_mxnet012.output.reference,
    output:
        result=MXNET012_CHECK,
    log:
        f"{LOGS}/verify_mxnet012.log",
    benchmark:
        f"{R}/benchmarks/verify_mxnet012.tsv"
    conda:
        conda_file("verify_mxnet012")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("verify_mxnet012"),
        folder=folder_of_input("info"),
    message:
        "Checking that MXNet 0.12 loads the model and computes what MXNet 1.9.1 computes"
    shell:
        stage("verify_mxnet012", "--dir {params.folder} --out {output.result}")


rule optimize:
    input:
        deploy=DEPLOY_INFO,
    output:
        xml=IR_XML,
        bin=f"{IR_DIR}/model.bin",
        contract=f"{IR_DIR}/model.contract.json",
    log:
        main=f"{LOGS}/optimize.log",
        model_optimizer=f"{LOGS}/optimize_model_optimizer.log",
    benchmark:
        f"{R}/benchmarks/optimize.tsv"
    conda:
        conda_file("optimize")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=stage_code("optimize"),
        precision=config["ir_precision"],
        color=config["ir_color"],
        mean_inside=switch("mean-in-ir", config["ir_mean_inside"]),
        out_dir=folder_of_output("xml"),
    message:
        "Converting the deploy graph to an OpenVINO {params.precision} IR with the Model Optimizer"
    shell:
        stage(
            "optimize",
            "--deploy {input.deploy} --precision {params.precision} --color {params.color}"
            " {params.mean_inside} --out-dir {params.out_dir} --model-name model"
            " --log {log.model_optimizer}",
        )


rule verify_ir:
    input:
        deploy=DEPLOY_INFO,
        xml=rules.optimize.output.xml,
        bin=rules.optimize.output.bin,
        contract=rules.optimize.output.contract,
        val=VAL_REC,
        int8=INT8_INPUTS,
        onnx=ONNX_MODEL,
        litert=LITERT_MODELS,
    output:
        result=IR_CHECK,
    log:
        main=f"{LOGS}/verify_ir.log",
        differences=f"{LOGS}/verify_ir_differences.txt",
    benchmark:
        f"{R}/benchmarks/verify_ir.tsv"
    conda:
        conda_file("verify_ir")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=stage_code("verify_ir"),
        min_score=config["parity_threshold"],
        iou=config["iou_threshold"],
        int8=int8_verify_option,
    message:
        "Checking the IR against the MXNet deploy model on every val image, and timing both"
    shell:
        stage(
            "verify_ir",
            "--deploy {input.deploy} --ir {input.xml} --val-rec {input.val} --min-score {params.min_score}"
            " --iou-threshold {params.iou} --out {output.result} --differences {log.differences} {params.int8}"
            " --onnx {input.onnx} --litert {input.litert}",
        )


rule export_onnx:
    input:
        deploy=DEPLOY_INFO,
        val=VAL_REC,
    output:
        model=ONNX_MODEL,
        contract=f"{R}/export_onnx/model.onnx.contract.json",
        network=ONNX_NETWORK,
        network_contract=f"{R}/export_onnx/network.onnx.contract.json",
        result=ONNX_CHECK,
    log:
        main=f"{LOGS}/export_onnx.log",
        differences=f"{LOGS}/export_onnx_differences.txt",
    benchmark:
        f"{R}/benchmarks/export_onnx.tsv"
    conda:
        conda_file("export_onnx")
    threads: 2
    resources:
        mem_mb=3000,
        runtime=20,
    params:
        code=stage_code("export_onnx"),
        min_score=config["parity_threshold"],
        iou=config["iou_threshold"],
        out_dir=folder_of_output("model"),
    message:
        "Exporting the deploy model to ONNX with NMS inside, proven with onnxruntime on every val image"
    shell:
        stage(
            "export_onnx",
            "--deploy {input.deploy} --val-rec {input.val} --min-score {params.min_score}"
            " --iou-threshold {params.iou} --out-dir {params.out_dir} --differences {log.differences}",
        )


rule export_litert:
    input:
        network=ONNX_NETWORK,
        network_contract=rules.export_onnx.output.network_contract,
        deploy=DEPLOY_INFO,
        train=TRAIN_REC,
        val=VAL_REC,
    output:
        models=[f"{LITERT_DIR}/model_{kind}.tflite" for kind in LITERT_KINDS],
        contract=f"{LITERT_DIR}/litert.contract.json",
        result=LITERT_CHECK,
    log:
        main=f"{LOGS}/export_litert.log",
        differences=f"{LOGS}/export_litert_differences.txt",
    benchmark:
        f"{R}/benchmarks/export_litert.tsv"
    conda:
        conda_file("export_litert")
    threads: 2
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        code=stage_code("export_litert"),
        min_score=config["parity_threshold"],
        iou=config["iou_threshold"],
        int8=LITERT_INT8_MODE,
        max_drop=config["int8_max_map_drop"],
        out_dir=folder_of_output("result"),
    message:
        "Converting network.onnx to LiteRT, proven with the LiteRT interpreter on every val image"
    shell:
        stage(
            "export_litert",
            "--network {input.network} --deploy {input.deploy} --train-rec {input.train} --val-rec {input.val}"
            " --min-score {params.min_score} --iou-threshold {params.iou}"
            " --int8 {params.int8} --max-map-drop {params.max_drop}"
            " --out-dir {params.out_dir} --differences {log.differences}",
        )


rule artifacts:
    input:
        deploy=DEPLOY_INFO,
        xml=rules.optimize.output.xml,
        bin=rules.optimize.output.bin,
        contract=rules.optimize.output.contract,
        metrics=METRICS,
        mxnet012=rules.export_mxnet012.output.info,
        mxnet012_check=MXNET012_CHECK,
        ir_check=IR_CHECK,
        annotations=ANNOTATIONS,
        deeplens_model=DEEPLENS_MODEL,
        deeplens_upload=rules.deeplens_package.output.upload,
        deeplens_package=DEEPLENS_PACKAGE,
        deeplens_rehearsal=DEEPLENS_REHEARSAL,
        onnx=ONNX_MODEL,
        onnx_contract=rules.export_onnx.output.contract,
        onnx_check=ONNX_CHECK,
        litert=LITERT_INPUTS,
        web=WEB_PAGE,
        int8=INT8_INPUTS,
    output:
        manifest=MANIFEST,
    log:
        f"{LOGS}/artifacts.log",
    benchmark:
        f"{R}/benchmarks/artifacts.tsv"
    conda:
        conda_file("artifacts")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=stage_code(
            "artifacts",
            files=[
                f"workflow/device/{name}"
                for name in ("infer.py", "onnx_infer.py", "litert_infer.py", "openvino_lambda.py")
            ],
        ),
        out_dir=folder_of_output("manifest"),
        config=json.dumps(model_config(config), sort_keys=True),
        int8=int8_artifacts_option,
        litert=litert_artifacts_option,
    message:
        "Collecting the artifacts for the devices, with their manifest"
    shell:
        stage(
            "artifacts",
            "--deploy {input.deploy} --ir {input.xml} --contract {input.contract} --metrics {input.metrics}"
            " --mxnet012 {input.mxnet012} --mxnet012-check {input.mxnet012_check} --ir-check {input.ir_check}"
            " --annotations {input.annotations} --deeplens-model {input.deeplens_model}"
            " --deeplens-upload {input.deeplens_upload} --deeplens-package {input.deeplens_package}"
            " --deeplens-rehearsal {input.deeplens_rehearsal} --onnx {input.onnx} --onnx-check {input.onnx_check}"
            " --web {input.web}"
            " --config {params.config:q} --out-dir {params.out_dir}"
            " {params.int8} {params.litert}",
        )
