"""report: one self-contained HTML page per run: how good the model is and how it was made."""

import argparse
import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from workflow.lib import cpu  # noqa: E402
from workflow.lib.cli import log, run_main, with_interval  # noqa: E402
from workflow.lib.stopping import planned_epochs, stop_reason  # noqa: E402

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0;display:block;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child{text-align:left}img{max-width:100%;margin:4px 0}
pre{background:#f7f7f7;padding:8px;overflow-x:auto}.big{font-size:1.4em}"""


def image_tag(png_or_jpg_bytes, mime="image/png"):
    return f'<img src="data:{mime};base64,{base64.b64encode(png_or_jpg_bytes).decode()}">'


def figure_tag(figure):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return image_tag(buffer.getvalue())


def table_html(frame):
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4f}", na_rep="", border=0, escape=True)


def number(value, digits=4):
    return "n/a" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def training_section(inputs, config, deploy, metrics):
    frame = pd.read_csv(inputs["logs"][-1])  # the last segment's log holds every epoch
    figure, (loss_axis, map_axis) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    frame.plot(x="epoch", y=["cls_loss", "loc_loss"], ax=loss_axis, title="training loss")
    if frame["val_map"].notna().any():
        frame.plot(
            x="epoch",
            y="val_map",
            ax=map_axis,
            title="val mAP (VOC07) per epoch",
            marker=".",
            label="per epoch (per-class NMS)",
        )
    if metrics["map_voc07"] is not None:
        map_axis.plot(
            [deploy["epoch"]],
            [metrics["map_voc07"]],
            "r*",
            markersize=12,
            label=f"evaluate (force_nms={deploy['force_nms']})",
        )
        map_axis.legend(loc="lower right", fontsize=8)
    map_axis.set_ylim(0, 1)
    for axis in (loss_axis, map_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    notes = stop_note(frame, config) + schedule_note(frame, config) + map_note(deploy, metrics)
    return figure_tag(figure) + notes + table_html(frame.tail(10))


def stop_note(frame, config):
    """The epochs trained, and why training ended before the last configured epoch when it did."""
    trained, planned = int(frame["epoch"].iloc[-1]), config["epochs"][-1]
    if trained >= planned:
        return f"<p>Trained all {planned} epochs.</p>"
    reason = stop_reason(
        frame.to_dict("records"),
        config["train_budget_minutes"],
        config["early_stop_patience"],
        config["early_stop_smoothing"],
    )
    return f"<p>Training stopped after epoch {trained} of {planned}: {html.escape(reason or 'unknown reason')}.</p>"


def schedule_note(frame, config):
    """How the learning rate went, and which weights each epoch's val mAP and the deployed model are."""
    planned = planned_epochs(frame.to_dict("records")) if "planned_epochs" in frame else None
    steps = config["lr_steps"]
    if planned:
        steps = [round(step * planned / config["epochs"][-1], 1) for step in steps]
        schedule = (
            f"After the warm-up the plan for the training budget fitted {planned} of {config['epochs'][-1]} epochs, "
            f"and the learning rate stepped by {config['lr_factor']:g} at epochs {steps} (lr_steps scaled to them)."
        )
    else:
        schedule = f"The learning rate stepped by {config['lr_factor']:g} at epochs {steps} after the warm-up."
    if config["ema_epochs"] > 0:
        schedule += (
            f" The val mAP of every epoch and the deployed model are of the moving average of the weights over about "
            f"{config['ema_epochs']:g} epochs (ema_epochs)."
        )
    return f"<p>{html.escape(schedule)}</p>"


def map_note(deploy, metrics):
    """Which NMS each val mAP uses: train.py's Validator builds the deploy graph with force_nms=False."""
    return (
        f"<p>The val mAP per epoch is train.py's: the deploy graph with <b>per-class NMS</b> (force_nms=False) and the "
        f"network's default NMS settings, VOC07 at IoU 0.5, difficult boxes ignored, images resized by MXNet's record "
        f"iterator. At the deployed epoch {deploy['epoch']} it was {number(deploy.get('val_map_at_epoch'))}. The final "
        f"evaluation (red star) runs the model as deployed, NMS "
        f"<b>{'across classes' if deploy['force_nms'] else 'per class'}"
        f"</b> (force_nms={deploy['force_nms']}, nms_threshold={deploy['nms_threshold']}), VOC07 at IoU "
        f"{metrics['iou_threshold']}, use_difficult={metrics['use_difficult']}: "
        f"<b>{number(metrics['map_voc07'])}</b>.</p>"
    )


def map_figure(metrics, key):
    """An mAP with its bootstrap interval and the number of val images, as metrics.json holds them."""
    return with_interval(metrics[key], metrics["intervals"][key], metrics["images"])


def epoch_note(deploy, metrics):
    """Which epoch is deployed, and whether the val set tells it apart from the last one."""
    note = f"Deployed epoch {deploy['epoch']}: {html.escape(deploy['epoch_reason'])}."
    if metrics["last_epoch"]:
        note += f" Against the last epoch: {html.escape(metrics['last_epoch']['summary'])}."
    elif deploy["epoch_choice"] != "last":
        note += " It is the last epoch trained."
    return note


def threshold_note(metrics):
    """The score threshold the device code uses by default, chosen on val."""
    chosen = metrics["score_threshold"]["overall"]
    if chosen["threshold"] is None:
        return "No val detections, so no score threshold was chosen; the device code uses 0.5."
    return (
        f"Score threshold of the device code (infer.py, the Lambda) unless set: <b>{chosen['threshold']:.3f}</b>, "
        f"the one that maximises F1 over all classes on val at IoU {metrics['score_threshold']['iou_threshold']} "
        f"(F1 {chosen['f1']:.3f}, precision {chosen['precision']:.3f}, recall {number(chosen['recall'], 3)})."
    )


PER_CLASS_COLUMNS = {
    "name": "class",
    "ap_voc07": "AP VOC07",
    "ap_area": "AP area",
    "ap_coco": "AP COCO 0.5:0.95",
    "npos": "objects",
    "precision_at_threshold": "precision at confusion_threshold",
    "recall_at_threshold": "recall at confusion_threshold",
    "f1_threshold": "F1-optimal threshold",
    "f1": "F1 there",
    "f1_precision": "precision there",
    "f1_recall": "recall there",
}


def per_class_section(inputs, metrics):
    frame = pd.DataFrame(metrics["per_class"])
    for key in ("ap_voc07", "ap_area", "ap_coco"):
        if f"{key}_low" in frame:
            frame[key] = [
                with_interval(
                    None if pd.isna(row[key]) else row[key],
                    (None if pd.isna(row[f"{key}_low"]) else row[f"{key}_low"], row[f"{key}_high"]),
                )
                for _, row in frame.iterrows()
            ]
    columns = {key: title for key, title in PER_CLASS_COLUMNS.items() if key in frame}
    note = (
        f"<p>AP from every detection, with its {metrics['bootstrap']['confidence']:.0%} bootstrap interval over the "
        f"{metrics['images']} val images ({metrics['bootstrap']['resamples']} resamples). Precision and recall at "
        f"confusion_threshold from the detections scoring &ge; {metrics['confusion_threshold']}, matched as in the "
        f"confusion matrix below; the F1-optimal threshold and the figures there match as the AP does. "
        f"All columns in <code>evaluate/per_class.csv</code>.</p>"
    )
    return (
        table_html(frame[list(columns)].rename(columns=columns))
        + note
        + image_tag(Path(inputs["curves"]).read_bytes())
        + image_tag(Path(inputs["f1_curves"]).read_bytes())
    )


def confusion_section(inputs, metrics):
    frame = pd.read_csv(inputs["confusion"]).rename(columns={"true": "true \\ predicted"})
    return (
        f"<p>Detections scoring &ge; {metrics['confusion_threshold']} (confusion_threshold; the device's default is "
        f"{number(metrics['score_threshold']['overall']['threshold'], 3)}) on the {metrics['images']} val images, in "
        f"descending score order, each matched to the unmatched ground-truth box of any class with the highest IoU "
        f"(&gt; {metrics['iou_threshold']}). Rows: true class; columns: predicted class. The <i>background</i> row "
        f"counts false alarms (detections matching no box), the <i>background</i> column missed objects; off the "
        f"diagonal a box found with the wrong label.</p>"
        + table_html(frame)
        + image_tag(Path(inputs["confusion_plot"]).read_bytes())
    )


def worst_section(inputs):
    ranking = pd.read_csv(inputs["ranking"])
    index = json.loads(Path(inputs["worst"]).read_text())
    wrong = ranking[ranking["errors"] > 0].assign(image=lambda frame: frame["image"].map(lambda path: Path(path).name))
    columns = [
        "rank",
        "image",
        "objects",
        "detections",
        "correct",
        "wrong_class",
        "false_positives",
        "missed",
        "errors",
    ]
    return (
        f"<p>{len(wrong)} of {len(ranking)} val images have an error at score &ge; {index['threshold']} (errors = "
        f"false positives + missed objects; a wrong label counts as both). The worst {len(index['images'])} "
        f"(detections left, ground truth right, as packed):</p>"
        + (table_html(wrong[columns].head(20)) if len(wrong) else "")
        + "".join(
            image_tag((Path(inputs["worst"]).parent / d["output"]).read_bytes(), "image/jpeg") for d in index["images"]
        )
    )


def proofs_table(manifest):
    """Every proof of the run, a row for each comparison: what was compared with what, on what, the largest
    difference and the tolerance (docs/numbers.md, "The proofs")."""
    ir, onnx, litert = manifest["ir"]["check"], manifest["onnx"]["check"], manifest.get("litert")
    deeplens, mxnet012 = manifest["deeplens"], manifest["mxnet012"]["check"]
    rows = [network_row("OpenVINO IR", network) for network in ir["proof"]["networks"]]
    rows.append(postprocessing_row("OpenVINO IR", ir["proof"]["postprocessing"]))
    if "int8" in ir:
        rows.append(
            map_rule_row(
                "OpenVINO IR INT8", ir["int8"]["ir_map_voc07"], ir["mxnet_map_voc07"], ir["int8"]["max_map_drop"]
            )
        )
    rows += [network_row("ONNX", onnx["proof"]["network"]), postprocessing_row("ONNX", onnx["proof"]["postprocessing"])]
    if litert:
        check = litert["check"]
        rows.append(network_row("LiteRT", check["float32_network"]))
        rows.append(postprocessing_row("LiteRT", check["proof"]["postprocessing"]))
        if "int8_map_voc07" in check:
            rows.append(
                map_rule_row("LiteRT INT8", check["int8_map_voc07"], check["mxnet_map_voc07"], check["max_map_drop"])
            )
    rows += [network_row("MXNet 0.12", mxnet012["proof"]["network"])]
    rows.append(postprocessing_row("MXNet 0.12", mxnet012["proof"]["postprocessing"]))
    rows.append(network_row("DeepLens graph (MXNet)", deeplens["model"]["proof"]["network"]))
    rows += [network_row("DeepLens IR", network) for network in deeplens["rehearsal"]["proof"]["networks"]]
    rows.append(postprocessing_row("DeepLens Lambda", deeplens["rehearsal"]["proof"]["postprocessing"]))
    return (
        '<p>Each export is proven apart from ties (docs/numbers.md, "The proofs"): its network\'s outputs (every '
        "anchor's class probabilities and box) against MXNet's on the val images, a model with FP16 weights against "
        "its FP32 twin with the weights rounded to FP16; its post-processing against the deploy graph's "
        "MultiBoxDetection on the same synthetic network outputs; its anchors, settings and class names against the "
        "deploy model's; an INT8 model by its mAP budget. The run stops on any difference over the tolerance.</p>"
        + table_html(pd.DataFrame(rows))
    )


def network_row(export, network):
    return {
        "export": export,
        "compared with": network["reference"],
        "what": f"{network['model']}: class probabilities / box offsets (times the variances), "
        f"{network['images']} images",
        "largest difference": f"{network['max_class_prob_difference']:.1e} / {network['max_box_difference']:.1e}",
        "tolerance": f"{network['tolerance']:g}",
    }


def postprocessing_row(export, postprocessing):
    return {
        "export": export,
        "compared with": "MXNet's MultiBoxDetection",
        "what": f"{postprocessing['model']}: the {postprocessing['mxnet_detections']} detections kept on "
        f"{postprocessing['cases']} synthetic network outputs",
        "largest difference": f"{postprocessing['max_difference']:.1e}",
        "tolerance": f"{postprocessing['tolerance']:g}",
    }


def map_rule_row(export, found, mxnet, budget):
    return {
        "export": export,
        "compared with": "MXNet",
        "what": "val mAP (VOC07): quantization changes the network by design, so its rule is the mAP budget",
        "largest difference": f"{mxnet - found:.4f} drop",
        "tolerance": f"{budget:g} (int8_max_map_drop)",
    }


def ir_section(check, manifest):
    latency = check["latency"]
    ran = check["inference_precision"]["ran"]
    return (
        f"<p>{check['precision']} IR on {check['images']} val images, computing in {ran} (the contract's "
        f"inference precision, the same on every CPU). mAP (VOC07) MXNet {check['mxnet_map_voc07']:.4f}, IR "
        f"{check['ir_map_voc07']:.4f}; with FP32 weights {check['conversion']['ir_map_voc07']:.4f} (held within "
        f"{check['map_tolerance']} of MXNet's). Reported: {check['matched']} detections (score &ge; "
        f"{check['min_score']}) paired with MXNet's ({check['agreement']:.1%}; {check['only_mxnet']} only in MXNet, "
        f"{check['only_ir']} only in the IR; {check['degenerate_mxnet']} MXNet and {check['degenerate_ir']} IR "
        f"boxes under one input pixel wide or high left out of the pairing): near-tied boxes flip with FP16 "
        f"rounding, which is why the proof compares the network's outputs instead.</p>"
        + speed_table(check, manifest)
        + f"<p>IR speed-up over MXNet on this CPU: {latency['ir_speedup']:.1f}x</p>"
        + fast_precision_note(check)
        + int8_note(check)
        + differences_list(check.get("differences", []))
    )


def onnx_section(onnx):
    check, contract = onnx["check"], onnx["contract"]
    latency = check["latency"]
    nms = "across classes" if contract["force_nms"] else "per class"
    return (
        f"<p>{onnx['model']} (opset {contract['opset']}, NMS {nms} inside) on {check['images']} val images with "
        f"onnxruntime {latency['onnxruntime']}; reported: {check['matched']} detections (score &ge; "
        f"{check['min_score']}) paired with MXNet's ({check['agreement']:.1%}; "
        f"{check['only_mxnet']} only in MXNet, {check['only_onnx']} only in ONNX). mAP (VOC07) MXNet "
        f"{check['mxnet_map_voc07']:.4f}, ONNX {check['onnx_map_voc07']:.4f} (tolerance {check['map_tolerance']}). "
        f"Per image (resize, inference, NMS; median of {latency['images_timed']}): onnxruntime "
        f"{latency['onnxruntime_ms']:.1f} ms, MXNet {latency['mxnet_ms']:.1f} ms.</p>"
        + differences_list(check.get("differences", []))
    )


def speed_table(check, manifest):
    """MXNet, the IR at each weight precision, model.onnx under onnxruntime and the LiteRT models, measured in one run
    on this machine (verify_ir's side by side), with the share of each model's detections that paired with MXNet's
    in its proof."""
    paired = paired_shares(check, manifest)
    rows = [
        {
            "model": f"{row['model']} {row['weights']}",
            "computes in": row["computes_in"],
            "val mAP (VOC07)": round(row["map_voc07"], 4),
            "detections paired with MXNet's": paired.get((row["model"], row["weights"]), ""),
            "ms per image (resize + inference + NMS, batch 1, median)": round(row["ms"], 2),
        }
        for row in check["side_by_side"]
    ]
    return table_html(pd.DataFrame(rows)) + f"<p>Measured on {html.escape(cpu.one_line(check['cpu']))}.</p>"


def paired_shares(check, manifest):
    """{(model, weights): the share of its detections that paired with MXNet's, as its proof found it}."""
    shares = {("MXNet", "FP32"): "(reference)", ("IR", check["precision"]): check["agreement"]}
    if check.get("int8"):
        shares[("IR", "INT8")] = check["int8"]["agreement"]
    shares[("ONNX", "FP32")] = manifest["onnx"]["check"]["agreement"]
    if manifest.get("litert"):
        litert = manifest["litert"]["check"]
        shares[("LiteRT", "FP32")] = litert["float32_paired"]["agreement"]
        if "int8_paired" in litert:
            shares[("LiteRT", "INT8")] = litert["int8_paired"]["agreement"]
    return {key: f"{value:.1%}" if isinstance(value, float) else value for key, value in shares.items()}


def litert_section(litert):
    if not litert:
        return "<p>No LiteRT models in this run (<code>litert: false</code>).</p>"
    check = litert["check"]
    float32 = check["float32_paired"]
    int8 = (
        f" INT8 ({litert['models']['int8']}, TFLite's full-integer quantization): mAP {check['int8_map_voc07']:.4f}, "
        f"at most {check['max_map_drop']} below MXNet's allowed; for information, "
        f"{check['int8_paired']['agreement']:.1%} of its detections paired with MXNet's."
        if "int8" in litert["models"]
        else f" INT8 not shipped: {html.escape(check['int8_not_shipped'])} (the model is in export_litert/ to look at)."
        if "int8_not_shipped" in check
        else " No INT8 model in this run (<code>litert_int8: false</code>)."
    )
    return (
        f"<p>{litert['models']['float32']} (channel ranges equalized, onnx2tf; litert_infer.py decodes the boxes and "
        f"suppresses) on {check['images']} val images with LiteRT's interpreter; reported: {float32['matched']} "
        f"detections (score &ge; {check['min_score']}) paired with MXNet's ({float32['agreement']:.1%}; "
        f"{float32['only_mxnet']} only in MXNet, {float32['only_litert_float32']} only in LiteRT); mAP (VOC07) "
        f"{check['float32_map_voc07']:.4f} against MXNet's {check['mxnet_map_voc07']:.4f} "
        f"(tolerance {check['map_tolerance']}).{int8}</p>"
    )


def int8_note(check):
    int8 = check.get("int8")
    if not int8:
        return "<p>No INT8 IR in this run (<code>int8_ir: false</code>).</p>"
    return (
        f"<p>INT8 IR for CPU targets (<code>model_int8.xml</code>): mAP (VOC07) {int8['ir_map_voc07']:.4f}, "
        f"{abs(int8['map_drop']):.4f} {'below' if int8['map_drop'] > 0 else 'above'} MXNet's (largest drop allowed: "
        f"{int8['max_map_drop']}); for information, "
        f"{int8['agreement']:.1%} of its detections paired with MXNet's ({int8['only_mxnet']} only in MXNet, "
        f"{int8['only_ir']} only in the IR). {html.escape(int8['quantization'] or '')}.</p>"
    )


def fast_precision_note(check):
    fast = check["fast_precision"]
    if not fast["supported"]:
        return f"<p>This CPU cannot compute in {fast['inference_precision']} (no AVX512_BF16 or AMX).</p>"
    return (
        f"<p>On this CPU the IR can also compute in {fast['ran']} (AVX512_BF16 or AMX), OpenVINO's default here; "
        f"for information, not part of the proof: {fast['ir_ms']:.1f} ms per image, mAP (VOC07) "
        f"{fast['ir_map_voc07']:.4f}, {fast['agreement']:.1%} of detections paired with MXNet's "
        f"({fast['only_mxnet']} only in MXNet, {fast['only_ir']} only in the IR). "
        f"<code>infer.py --precision-hint {fast['inference_precision']}</code> runs it so.</p>"
    )


def deeplens_note(deeplens):
    model, rehearsal = deeplens["model"], deeplens["rehearsal"]
    return (
        f"<p>For an AWS DeepLens (<code>deeplens/</code>; docs/devices.md: AWS DeepLens): "
        f"<code>{html.escape(model['model_name'])}</code> takes raw BGR frames; layers {', '.join(model['layers'])}, "
        f"all on the device's list (its proof and the Lambda's are in the table of proofs above). "
        f"The Lambda <code>{html.escape(deeplens['package']['zip'])}</code>, rehearsed against stand-ins of the "
        f"device's libraries on {rehearsal['images']} val images; reported: {rehearsal['paired']} detections "
        f"(score &ge; {rehearsal['min_score']}) paired with MXNet's ({rehearsal['agreement']:.1%}; "
        f"{rehearsal['only_mxnet']} only in MXNet, {rehearsal['only_lambda']} only from the Lambda), "
        f"{rehearsal['display_frames']} frames on the project stream.</p>"
    )


def differences_list(differences, shown=10):
    if not differences:
        return ""
    items = "".join(f"<li>{html.escape(line)}</li>" for line in differences[:shown])
    more = f"<li>... and {len(differences) - shown} more</li>" if len(differences) > shown else ""
    return f"<p>Detections that differ:</p><ul>{items}{more}</ul>"


def stages_section(benchmarks):
    """Wall time, CPU time and peak memory of each stage's last run, from Snakemake's benchmark files."""
    rows = []
    for path in benchmarks:
        measured = pd.read_csv(path, sep="\t").iloc[-1]
        wall, cpu_seconds, memory = (
            pd.to_numeric(measured[key], errors="coerce") for key in ("s", "cpu_time", "max_rss")
        )
        rows.append(
            {
                "stage": Path(path).stem,
                "wall s": round(wall, 1),
                "CPU s": number(cpu_seconds, 1),
                "peak memory MB": number(memory, 0),
            }
        )  # psutil samples too seldom for the shortest jobs: n/a
    frame = pd.DataFrame(rows)
    total = f"{frame['wall s'].sum() / 60:.1f} min of stage wall time in all" if rows else "no stage measured"
    return (
        f"<p>As Snakemake measured them (<code>benchmarks/*.tsv</code>; the report's own is written after "
        f"it): {total}.</p>" + table_html(frame)
    )


def build(inputs, config):
    """The page, from the paths the rule declares (inputs: name -> path or list of paths, as in the rule)."""
    deploy, metrics, manifest, demo = (
        json.loads(Path(inputs[name]).read_text()) for name in ("deploy", "metrics", "manifest", "demo")
    )
    problems = pd.read_csv(inputs["table"])
    splits = {name: len(Path(path).read_text().splitlines()) for name, path in zip(("train", "val"), inputs["splits"])}
    images = len(json.loads(Path(inputs["annotations"]).read_text()))
    parts = [
        f"<h1>deeplens-ssd run <code>{html.escape(config['run'])}</code></h1>",
        f"<p class=big>val mAP (VOC07 11-point, IoU {metrics['iou_threshold']}): "
        f"<b>{map_figure(metrics, 'map_voc07')}</b>; "
        f"area mAP {map_figure(metrics, 'map_area')}; COCO mAP@0.5:0.95 {map_figure(metrics, 'coco_map')}; "
        f"difficult boxes {'counted' if metrics['use_difficult'] else 'ignored'}</p>",
        f"<p>In brackets: the {metrics['bootstrap']['confidence']:.0%} bootstrap interval over the val images "
        f"({metrics['bootstrap']['resamples']} resamples, seed {metrics['bootstrap']['seed']}): "
        "how much the figure depends "
        f"on which images are in val. {threshold_note(metrics)}</p>",
        f"<p>{epoch_note(deploy, metrics)} Network {deploy['network']} at "
        f"{deploy['data_shape']} px, force_nms={deploy['force_nms']}, nms_threshold={deploy['nms_threshold']}.</p>",
        "<h2>Data</h2>",
        f"<p>{images} usable images ({splits['train']} train, {splits['val']} val); {len(problems)} problems found "
        f"({(problems['severity'] == 'error').sum()} errors).</p>",
        table_html(problems.head(50)) if len(problems) else "",
        table_html(pd.read_csv(inputs["stats"])),
        image_tag(Path(inputs["stats_plot"]).read_bytes()),
        "<h2>Training</h2>",
        training_section(inputs, config, deploy, metrics),
        "<h2>Per-class metrics</h2>",
        per_class_section(inputs, metrics),
        "<h2>Confusion matrix with background</h2>",
        confusion_section(inputs, metrics),
        "<h2>Val images with the most errors</h2>",
        worst_section(inputs),
        f"<h2>Demo (score &ge; {demo['threshold']}, demo_threshold; detections left, ground truth right)</h2>",
        "".join(
            image_tag((Path(inputs["demo"]).parent / d["output"]).read_bytes(), "image/jpeg") for d in demo["images"]
        ),
        "<h2>The proofs: every export against MXNet</h2>",
        proofs_table(manifest),
        "<h2>OpenVINO IR against MXNet</h2>",
        ir_section(json.loads(Path(inputs["ir_check"]).read_text()), manifest),
        "<h2>ONNX (NMS inside) against MXNet</h2>",
        onnx_section(manifest["onnx"]),
        "<h2>LiteRT (TensorFlow Lite) against MXNet</h2>",
        litert_section(manifest.get("litert")),
        "<h2>Artifacts for the devices</h2>",
        deeplens_note(manifest["deeplens"]),
        table_html(pd.DataFrame([{"file": k, **v} for k, v in manifest["files"].items()])),
        "<h3>IR input contract</h3>",
        f"<pre>{html.escape(json.dumps(manifest['ir']['input_contract'], indent=1))}</pre>",
        "<h2>How it was made</h2>",
        f"<pre>{html.escape(json.dumps(manifest['provenance'], indent=1))}</pre>",
        "<h3>Time and memory per stage</h3>",
        stages_section(inputs["benchmarks"]),
        "<h3>Config</h3>",
        f"<pre>{html.escape(json.dumps(config, indent=1))}</pre>",
    ]
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>deeplens-ssd {html.escape(config['run'])}</title>"
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m workflow.report", description=__doc__)
    parser.add_argument("--inputs", required=True, help="JSON object: the rule's named inputs (name -> path or paths)")
    parser.add_argument("--config", required=True, help="the run's config as JSON")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    Path(args.out).write_text(build(json.loads(args.inputs), json.loads(args.config)))
    log(f"report: {args.out}")


if __name__ == "__main__":
    run_main(main)
