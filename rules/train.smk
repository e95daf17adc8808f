# Training in segments: epochs [E1, E2, ...] trains 0 -> E1 (from scratch or finetuning the pretrained model),
# then each next segment resumes from the previous one's checkpoint, weights and optimizer state included.


rule pretrained:
    output:
        params=PRETRAINED,
    log:
        f"{LOGS}/pretrained.log",
    benchmark:
        f"{R}/benchmarks/pretrained.tsv"
    conda:
        conda_file("pretrained")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    params:
        code=stage_code("pretrained"),
        spec=json.dumps(config["pretrained"]),
    message:
        "Finding the pretrained weights (downloads go once into $DEEPLENS_SSD_CACHE or ~/.cache/deeplens-ssd)"
    shell:
        stage(
            "pretrained",
            '--spec {params.spec:q} --cache "${{DEEPLENS_SSD_CACHE:-$HOME/.cache/deeplens-ssd}}" --out {output.params}',
        )


rule train_segment:
    input:
        previous_segment_log,
        first_segment_pretrained,
        train=TRAIN_REC,
        val=VAL_REC,
    output:
        log=f"{R}/train/epoch_{{end}}/log.csv",
        symbol=f"{R}/train/epoch_{{end}}/ssd-symbol.json",
    log:
        f"{LOGS}/train_epoch_{{end}}.log",
    benchmark:
        f"{R}/benchmarks/train_epoch_{{end}}.tsv"
    wildcard_constraints:
        end=r"\d+",
    conda:
        conda_file("train")
    threads: 8
    resources:
        mem_mb=8000,
        runtime=24 * 60,
        gpu=len(config["gpus"]),
    params:
        code=stage_code("train"),
        out=segment_out,
        begin=segment_begin,
        resume=resume_option,
        pretrained=pretrained_option,
        classes=CLASSES_JSON,
        network=config["network"],
        data_shape=config["data_shape"],
        batch_size=config["batch_size"],
        learning_rate=config["learning_rate"],
        momentum=config["momentum"],
        weight_decay=config["weight_decay"],
        warmup=config["warmup_epochs"],
        # the last epoch shapes a segment's training only through the budget's plan and the mosaics' close: without
        # them a segment's own end stands in, so that appending a segment leaves the earlier ones as they are
        final_epoch=lambda wildcards: (
            config["epochs"][-1] if config["train_budget_minutes"] or config["mosaic"] else wildcards.end
        ),
        ema_epochs=config["ema_epochs"],
        lr_steps=",".join(map(str, config["lr_steps"])),
        lr_factor=config["lr_factor"],
        seed=config["seed"],
        freeze=config["freeze"] if config["pretrained"] else "",
        mirror=switch("mirror", config["mirror"]),
        mosaic=config["mosaic"],
        quarter_turns=config["quarter_turns"],
        mosaic_close=config["mosaic_close_epochs"],
        budget=config["train_budget_minutes"],
        patience=config["early_stop_patience"],
        smoothing=config["early_stop_smoothing"],
        gpus=",".join(map(str, config["gpus"])),
    message:
        "Training {params.network} SSD at {params.data_shape} px up to epoch {wildcards.end}"
    shell:
        stage(
            "train",
            "--train-rec {input.train} --val-rec {input.val} --classes {params.classes:q}"
            " --network {params.network} --data-shape {params.data_shape} --batch-size {params.batch_size}"
            " --begin-epoch {params.begin} --end-epoch {wildcards.end} {params.resume} {params.pretrained}"
            " --learning-rate {params.learning_rate} --momentum {params.momentum} --wd {params.weight_decay}"
            " --warmup-epochs {params.warmup} --lr-steps '{params.lr_steps}' --lr-factor {params.lr_factor}"
            " --final-epoch {params.final_epoch} --ema-epochs {params.ema_epochs}"
            " --freeze={params.freeze:q} {params.mirror} --quarter-turns {params.quarter_turns} --mosaic {params.mosaic}"
            " --mosaic-close-epochs {params.mosaic_close} --budget-minutes {params.budget} --patience {params.patience}"
            " --patience-smoothing {params.smoothing} --seed {params.seed} --threads {threads}"
            " --gpus '{params.gpus}' --out {params.out}",
        )
