# The AWS DeepLens path: the model as the device takes it, the inference Lambda's zip, and a rehearsal of both
# against stand-ins of the device's libraries. artifacts (rules/deploy.smk) copies the result into
# artifacts/deeplens/.
DEEPLENS_MODEL = f"{R}/deeplens_model/deeplens_model.json"
# lambda_function.py, local_display.py, model.json, labels.txt, the zip
DEEPLENS_UPLOAD = f"{R}/deeplens_package/upload"
DEEPLENS_ZIP_NAME = f"deeplens-{config['run']}-lambda.zip"
DEEPLENS_PACKAGE = f"{R}/deeplens_package/package.json"
DEEPLENS_REHEARSAL = f"{R}/deeplens_rehearsal/rehearsal.json"
DEEPLENS_DEVICE_CODE = ["workflow/device/deeplens/lambda_function.py", "workflow/device/deeplens/local_display.py"]
DEEPLENS_STANDINS = [f"workflow/deeplens_standins/{name}.py" for name in ("awscam", "mo", "greengrasssdk")]


rule deeplens_model:
    input:
        deploy=DEPLOY_INFO,
        val=VAL_REC,
    output:
        info=DEEPLENS_MODEL,
        model=directory(f"{R}/deeplens_model/model"),
    log:
        f"{LOGS}/deeplens_model.log",
    benchmark:
        f"{R}/benchmarks/deeplens_model.tsv"
    conda:
        conda_file("deeplens_model")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=stage_code("deeplens_model"),
    message:
        "Making the DeepLens model: raw BGR frames in, only the device's layers, MXNet 0.12 form"
    shell:
        stage(
            "deeplens_model",
            "--deploy {input.deploy} --val-rec {input.val} --out-dir {output.model} --out {output.info}",
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
        conda_file("deeplens_package")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=stage_code("deeplens_package", files=DEEPLENS_DEVICE_CODE),
        zip_name=DEEPLENS_ZIP_NAME,
    message:
        "Packaging the DeepLens inference Lambda as the Lambda console takes it"
    shell:
        stage(
            "deeplens_package",
            "--model-info {input.info} --metrics {input.metrics} --out-dir {output.upload} --zip-name {params.zip_name:q}"
            " --out {output.summary}",
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
        conda_file("deeplens_rehearsal")
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        code=stage_code("deeplens_rehearsal", files=DEEPLENS_STANDINS),
        min_score=config["parity_threshold"],
        zip_name=DEEPLENS_ZIP_NAME,
    message:
        "Rehearsing the DeepLens Lambda against stand-ins of the device's libraries on every val image"
    shell:
        stage(
            "deeplens_rehearsal",
            "--deploy {input.deploy} --model-info {input.info} --zip {input.upload}/{params.zip_name:q} --val-rec {input.val}"
            " --min-score {params.min_score} --out {output.result} --differences {log.differences}",
        )
