"""The one results schema: column names and file names of a result store.

A result store is a directory written by ``robustmix eval`` and read by
``robustmix report`` / ``robustmix export``::

    RESULTS_DIR/
      store.json            format marker: {"format": "robustmix-results", "version": STORE_VERSION}
      examples/*.parquet    per-example rows (EXAMPLE_COLUMNS), one file per finished work unit
      summary.parquet       aggregate rows (SUMMARY_COLUMNS), rebuilt from examples/
      summary.csv           the same table as CSV
      models.csv            one row per evaluated model (MODEL_COLUMNS)
      diagnostics.csv       one row per raised flag (DIAGNOSTIC_COLUMNS)
      banks/<model_id>.npy  float32 (C, k, k) spatial filter bank of the first block, if any
      run.json              provenance (results.RunInfo): spec, eval_seed, code and package versions,
                            device, world_size, seconds, finished
      adversarials/<unit>.safetensors
                            with save_adversarials = true: the unit's adversarial inputs per eps,
                            changes only (layout, reader and writer: advfile.py)

Numbers are stored as numbers: ``eps`` is a float (8/255 -> 0.0313725...);
its display form lives in ``eps_label``.
"""

STORE_FORMAT = "robustmix-results"
# 2: run.json is results.RunInfo; variant parameters are columns (VARIANT_PARAMS). A store of another version is refused, never half-read.
STORE_VERSION = 2

WORST_CASE = "worst-case"  # attack name of the per-eps minimum over all attacks
# Threat model of common-corruption rows (robustmix.corruption_eval): attack = corruption type,
# eps = severity 1-5 (eps_label "s1".."s5"). Not an eps-ball: no worst case over its "attacks".
CORRUPTIONS = "corruptions"
THREAT_MODELS = ("Linf", "L2", "L1")  # eps-ball threat models; corruptions are not one


def threat_model_order(tm: str) -> tuple:
    """Sort key: the order of THREAT_MODELS (Linf, L2, L1), then any other name alphabetically."""
    return (THREAT_MODELS.index(tm) if tm in THREAT_MODELS else len(THREAT_MODELS), str(tm))


EXAMPLE_COLUMNS = (
    "model",         # zoo name or external model id
    "attack",        # fgsm | pgd | autoattack | square | transfer | torchattacks.<Name>
    "threat_model",  # Linf | L2 | L1
    "eps",           # float
    "index",         # index of the example in the data split
    "label",         # true class
    "correct",       # bool: robust at this eps (clean-correct and not broken)
    "margin",        # logit[y] - max_{j != y} logit[j] at the final adversarial input
    "eval_seed",
    "precision",     # fp32 | bf16: the model's precision inside the attack (verdicts are fp32)
    "attack_batch",  # examples attacked at once; below the unit's size after running out of memory
    "radius",        # minimum-norm attacks: norm of the closest adversarial found (inf: none, 0: clean-wrong);
                     # robust at eps iff radius > eps. NaN for fixed-eps attacks (robustmix/radius.py)
)

# Every variant parameter (robustmix.variants.VARIANTS defaults), one numeric column each in
# models.csv and the summary: NaN where the model's variant has no such parameter.
VARIANT_PARAMS = ("sigma", "rho")

# Per-example columns of randomised models only (diagnostic flag "randomized"); absent otherwise.
VOTE_COLUMNS = (
    "votes",         # forward passes, of vote_passes, that classified the final input correctly
    "vote_passes",   # the spec's randomized_votes; correct = votes > vote_passes / 2 (majority)
)

SUMMARY_COLUMNS = (
    "model", "variant", *VARIANT_PARAMS, "arch", "dataset", "train_seed",
    "threat_model", "attack", "eps", "eps_label",
    "n", "n_robust", "robust_acc", "ci_low", "ci_high",
    "clean_acc", "seconds", "fwd_bwd_passes",
    "eval_seed", "spec_hash", "code_version", "nested",
    "precision",
)

MODEL_COLUMNS = (
    "model", "variant", *VARIANT_PARAMS, "arch", "dataset", "train_seed",
    "params", "trainable_params", "clean_acc", "source",
)

DIAGNOSTIC_COLUMNS = ("model", "flag", "detail")

# What each diagnostic flag means; shown in reports next to a raised flag.
DIAGNOSTIC_FLAGS = {
    "fgsm-beats-pgd": "FGSM found more adversarial examples than PGD at some eps: "
                      "the PGD optimisation is failing, a sign of gradient masking.",
    "non-monotonic": "Robust accuracy rises with eps somewhere: the attack is unreliable "
                     "(larger balls contain all smaller ones).",
    "black-box-beats-white-box": "A gradient-free (Square) or transfer attack beat the white-box "
                                 "attacks: gradients are likely obfuscated.",
    "robust-at-full-range": "Robust accuracy above chance at the full input range "
                            "(eps=1 for Linf): the attack cannot be working.",
    "zero-gradients": "A large fraction of input gradients are exactly zero: gradient masking.",
    "randomized": "Two forward passes on the same input differ: the model is randomised; "
                  "use EOT attacks (e.g. AutoAttack version='rand').",
    "randomized-without-eot": "A randomised model was attacked by AutoAttack without EOT (version other "
                              "than 'rand', as the spec asked): its robust accuracy may be overstated.",
    "train-mode": "The model was in train mode when handed to the evaluation.",
    "probability-outputs": "Outputs look like probabilities, not logits: losses saturate and "
                           "gradient attacks can be weakened.",
}
