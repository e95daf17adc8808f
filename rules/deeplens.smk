# The AWS DeepLens path: the model as the device takes it, the inference Lambda's zip, and a rehearsal of both
# against stand-ins of the device's libraries. collect_artifacts (rules/deploy.smk) copies the result into
# deeplens_artifacts/deeplens/.
DEEPLENS = f"{R}/deeplens"
DEEPLENS_MODEL = f"{DEEPLENS}/deeplens_model.json"
DEEPLENS_UPLOAD = f"{DEEPLENS}/upload"  # lambda_function.py, local_display.py, model.json, labels.txt, the zip
DEEPLENS_ZIP_NAME = f"deeplens-{config['run']}-lambda.zip"
DEEPLENS_PACKAGE = f"{DEEPLENS}/package.json"
DEEPLENS_REHEARSAL = f"{DEEPLENS}/rehearsal.json"
DEEPLENS_DEVICE_CODE = ["workflow/device/deeplens/lambda_function.py", "workflow/device/deeplens/local_display.py"]
DEEPLENS_STANDINS = [f"workflow/deeplens_standins/{name}.py" for name in ("awscam", "mo", "greengrasssdk")]
# after artifacts in the report's time table
STAGE_BENCHMARKS += [
    f"{R}/benchmarks/{stage}.tsv" for stage in ("deeplens_model", "deeplens_package", "deeplens_rehearsal")
]


rule deeplens_model:
    input:
        deploy=DEPLOY_INFO,
        val=VAL_REC,
    output:
        info=DEEPLENS_MODEL,
        model=directory(f"{DEEPLENS}/model"),
    log:
        f"{LOGS}/deeplens_model.log",
    benchmark:
        f"{R}/benchmarks/deeplens_model.tsv"
    conda:
        "../envs/mxnet.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("deeplens_model"),
        min_score=config["parity_threshold"],
    message:
        "Making the DeepLens model: raw BGR frames in, only the device's layers, MXNet 0.12 form"
    shell:
        stage(
            "deeplens_model",
            "--deploy {input.deploy} --val-rec {input.val} --min-score {params.min_score}"
            " --out-dir {output.model} --out {output.info}",
        )


rule deeplens_package:
    input:
        info=DEEPLENS_MODEL,
        model=rules.deeplens_model.output.model,
        metrics=METRICS,
    output:
        upload=directory(DEEPLENS_UPLOAD),
        summary=DEEPLENS_PACKAGE,
    log:
        f"{LOGS}/deeplens_package.log",
    benchmark:
        f"{R}/benchmarks/deeplens_package.tsv"
    conda:
        "../envs/deeplens-mxnet.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=stage_code("deeplens_package", "deeplens-mxnet", files=DEEPLENS_DEVICE_CODE),
        zip_name=DEEPLENS_ZIP_NAME,
    message:
        "Packaging the DeepLens inference Lambda as the Lambda console takes it"
    shell:
        stage(
            "deeplens_package",
            "--model-info {input.info} --metrics {input.metrics} --out-dir {output.upload} --zip-name {params.zip_name:q}"
            " --out {output.summary}",
            env="deeplens-mxnet",
        )


rule deeplens_rehearsal:
    input:
        deploy=DEPLOY_INFO,
        info=DEEPLENS_MODEL,
        model=rules.deeplens_model.output.model,
        upload=rules.deeplens_package.output.upload,
        val=VAL_REC,
    output:
        result=DEEPLENS_REHEARSAL,
    log:
        main=f"{LOGS}/deeplens_rehearsal.log",
        differences=f"{LOGS}/deeplens_rehearsal_differences.txt",
    benchmark:
        f"{R}/benchmarks/deeplens_rehearsal.tsv"
    conda:
        "../envs/optimizer.yaml"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=stage_code("deeplens_rehearsal", "optimizer", files=DEEPLENS_STANDINS),
        min_score=config["parity_threshold"],
        zip_name=DEEPLENS_ZIP_NAME,
    message:
        "Rehearsing the DeepLens Lambda against stand-ins of the device's libraries on every val image"
    shell:
        stage(
            "deeplens_rehearsal",
            "--deploy {input.deploy} --model-info {input.info} --zip {input.upload}/{params.zip_name:q} --val-rec {input.val}"
            " --min-score {params.min_score} --out {output.result} --differences {log.differences}",
            env="optimizer",
        )
