# export_web: the browser page (onnxruntime-web's wasm backend) that runs model.onnx, in a folder of its own;
# artifacts (rules/deploy.smk) copies it into artifacts/web/.


rule export_web:
    input:
        onnx=ONNX_MODEL,
        contract=rules.export_onnx.output.contract,
        metrics=METRICS,
    output:
        page=WEB_PAGE,
        script=f"{WEB_DIR}/app.js",
        model=f"{WEB_DIR}/model.onnx",
        contract=f"{WEB_DIR}/model.onnx.contract.json",
        info=f"{WEB_DIR}/web.json",
        readme=f"{WEB_DIR}/README.md",
        runtime=[f"{WEB_DIR}/{Path(name).name}" for name in WEB_RUNTIME["files"]],
    log:
        f"{LOGS}/export_web.log",
    benchmark:
        f"{R}/benchmarks/export_web.tsv"
    conda:
        conda_file("export_web")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=stage_code(
            "export_web", files=["workflow/web/index.html", "workflow/web/app.js", "envs/onnxruntime-web.json"]
        ),
        out_dir=folder_of_output("page"),
    message:
        f"Writing the browser page: model.onnx on onnxruntime-web {WEB_RUNTIME['version']} (wasm)"
    shell:
        stage(
            "export_web",
            "--onnx {input.onnx} --contract {input.contract} --metrics {input.metrics} --out-dir {params.out_dir}",
        )
