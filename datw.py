"""DATW: Discrepancy-Aware Teacher Weighting, and the KD losses that consume its target.

Reading guide
-------------
What: the paper's DATW (arXiv 2511.09469, the method section's Discrepancy-Aware Teacher
Weighting) plus the baselines it is compared with, all behind one call signature. Read top to
bottom in the paper's order: confidence c_k -> discrepancy d_k -> weights w_k -> fused target
z_target -> KD loss -> the baselines.

Idea: for every clip x, each teacher k (teacher 0 = ViT, teacher 1 = CNN; any K works) gets an
efficacy score that grows when the teacher is confident (low-entropy softmax) *and* disagrees
with the student (it has something to teach). Scores become weights over teachers, and the
student is distilled towards the weighted logits  z_target = w_vit z_vit + w_cnn z_cnn.
    c_k = 1 - H(softmax(z_k / T_c)) / log C          confidence in [0, 1]: 1 one-hot, 0 uniform
    d_k = (1 - cos(z_k - mean z_k, z_s - mean z_s)) / 2   discrepancy in [0, 1]
    e_k = c_k * d_k                                  efficacy
    w_k = exp(e_k / tau_w) / sum_j exp(e_j / tau_w)   weights, computed without gradient
    z_target = sum_k w_k z_k                         the fused soft target (paper)
    L_KD = T^2 * 1/B sum_b KL(softmax(z_target / T) || softmax(z_s / T))   (Hinton)
The KD loss is Hinton's (the paper's); `dist_loss` (DIST) is an option for the pretrained
student (train.py --kd-loss dist).
Two temperatures, two names: T is the KD temperature (Hinton's), T_c the temperature at which a
teacher's confidence is read; tau_w sets the contrast of the softmax over teachers.

Our reading. The paper gives the fused target z_target and says in words what the efficacy
score rewards: a confident teacher (a low-entropy softmax) that disagrees with the student (for
example a cosine distance between logits), the scores normalized into weights over the teachers.
How the two factors combine, how they are scaled and normalized, and at which temperatures are
ours:
- e = c * d, a product: a teacher must be sure AND say something new. An unsure teacher (c=0)
  or one that repeats the student (d=0) scores 0 whatever the other factor; the softmax still
  gives it a share, so no teacher is ever switched off completely. Note: a consequence. A teacher
  at chance (c ~ 0) and a good teacher the student already agrees with (d ~ 0) both score ~0, so
  they get about equal weights: DATW cannot tell "nothing to teach" from "nothing new to teach"
  (the demo's "ViT at chance" sample). The paper's setting, two teachers stronger than the
  student, rarely asks that question; a broken teacher does.
- Discrepancy uses *centred* logits. Note: softmax ignores adding a constant to all logits, so
  two logit vectors with the same prediction must have d = 0; the plain cosine of raw logits
  would call them different. Cosine ignores scale, so d measures *what* a teacher says and c
  *how sure* it is: the two factors do not overlap.
- Confidence at T_c = 1 by default (the teachers' own predictions), NOT at the KD temperature:
  a teacher 98% sure of one class out of C=51 has c = 0.96 at T_c = 1 but c = 0.035 at
  T_c = 4, so at the KD temperature every e would be near 0 and the weights drift to uniform.
- tau_w = 0.1: weight ratio w_a / w_b = exp((e_a - e_b) / tau_w). With e in [0, 1], tau_w = 1
  keeps weights near uniform (an efficacy gap of 0.1 gives 0.52 / 0.48); 0.1 turns gaps of
  0.1 / 0.3 into 0.73 / 0.27 and 0.95 / 0.05, and only a maximal gap (~1) hands the sample to
  one teacher. The demo prints the sweep.
- Weights carry no gradient: they choose the target, they are not trained (no shortcut in
  which the student moves the weights to make its own loss small).
- Left out: ground-truth labels play no part in the weights (the paper names only
  confidence and discrepancy), so a confidently *wrong* teacher that disagrees with the student
  gets weight; the cross-entropy term on labels is what keeps the student honest.
Baselines for ablation (same signature; `teacher_weights(method, ...)` picks one):
"uniform" (w = 1/K), "entropy" (confidence only: softmax(c / tau_w), i.e. DATW with d_k = 1;
the entropy-based weighting of EBKD, Kwon et al. ICASSP 2020, in our scale so the ablation
isolates the discrepancy factor), "camkd" (label-aware: the teacher whose cross-entropy against
the clip's label is lower gets more weight, CA-MKD, Zhang et al. ICASSP 2022; the only rule that
reads the labels y), "vit" / "cnn" (all weight on teacher 0 / teacher 1).
Consumes logits only (and the labels y (B,) for "camkd"): z_vit, z_cnn, z_s of shape (B, C);
no feature-dict keys.
"""
import math

import torch
import torch.nn.functional as F


def _stack_teachers(teacher_logits, student_logits):
    # K tensors (B, C) -> (K, B, C) float32; the order is the caller's (train.py: [vit, cnn]).
    shapes = [tuple(z.shape) for z in teacher_logits]
    if student_logits.dim() != 2 or any(s != tuple(student_logits.shape) for s in shapes):
        raise ValueError(f"expected K teacher logits and the student logits, all of shape "
                         f"(B, C); got teachers {shapes}, student {tuple(student_logits.shape)}.")
    if student_logits.shape[1] < 2:
        raise ValueError("confidence needs C >= 2 classes (it divides by log C).")
    return torch.stack([z.float() for z in teacher_logits])


def confidence(z, T_c=1.0):
    """c = 1 - H(softmax(z/T_c)) / log C per row of z (..., C); 1 for one-hot, 0 for uniform."""
    log_p = F.log_softmax(z.float() / T_c, dim=-1)  # (..., C), finite even for logits of 1e4
    # H = -sum p log p; p underflowing to 0 contributes 0 * (finite) = 0, never NaN.
    H = -(log_p.exp() * log_p).sum(dim=-1)  # (...)
    # Divide by log C, the entropy of the uniform distribution, so c is in [0, 1] for any C
    # (the clamp only removes rounding that puts H a hair above log C).
    return (1.0 - H / math.log(z.shape[-1])).clamp(0.0, 1.0)


def discrepancy(z_t, z_s):
    """d = (1 - cos(z_t - mean z_t, z_s - mean z_s)) / 2 per row; 0 same prediction, 1 opposite."""
    # Centre over classes: softmax is shift-invariant, so the shift carries no prediction.
    z_t = z_t.float() - z_t.float().mean(dim=-1, keepdim=True)  # (..., C)
    z_s = z_s.float() - z_s.float().mean(dim=-1, keepdim=True)  # (..., C)
    # cosine_similarity divides by max(norm product, eps): a flat row gives cos 0, so d = 0.5.
    return (1.0 - F.cosine_similarity(z_t, z_s, dim=-1)) / 2.0


@torch.no_grad()  # weights select the target; they are never trained (see reading guide)
def datw_weights(teacher_logits, student_logits, T_c=1.0, tau_w=0.1):
    """DATW weights (B, K): softmax over teachers of c_k * d_k / tau_w. Rows sum to 1, no grad."""
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        z_t = _stack_teachers(teacher_logits, student_logits)  # (K, B, C)
        c = confidence(z_t, T_c)  # (K, B): how sure each teacher is
        d = discrepancy(z_t, student_logits.float()[None])  # (K, B): how much it would teach
        e = c * d  # (K, B) efficacy: sure AND different
        # Normalise over teachers (dim 0), one distribution per sample; tau_w sets the contrast.
        return torch.softmax(e / tau_w, dim=0).t()  # (K, B) -> (B, K)


def fuse_logits(teacher_logits, w):
    """z_target = sum_k w_k z_k per sample: (K x (B, C)), (B, K) -> (B, C) float32."""
    z_t = torch.stack([z.float() for z in teacher_logits])  # (K, B, C)
    # Paper: z_target = w_cnn z_cnn + w_vit z_vit; w[:, k] broadcasts over the C classes.
    return (w.float().t()[:, :, None] * z_t).sum(dim=0)  # (K, B, 1) * (K, B, C) -> (B, C)


def kd_loss(student_logits, target_logits, T=4.0):
    """Hinton KD: T^2 * KL(softmax(z_target/T) || softmax(z_s/T)), sum over classes, mean over B."""
    B = student_logits.shape[0]
    # float32 with autocast off, whatever the caller's precision: exp/log of logits up to 1e4
    # must stay finite and keep their digits, which fp16/bf16 cannot promise.
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        # The target is a fixed teacher signal: detach so no gradient can reach a teacher.
        log_p_t = F.log_softmax(target_logits.detach().float() / T, dim=1)  # (B, C)
        log_p_s = F.log_softmax(student_logits.float() / T, dim=1)  # (B, C)
        # KL = sum_c p_t (log p_t - log p_s). From log-probabilities: no log(0) when p_t underflows.
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
        # Hinton et al.: soft-target gradients scale as 1/T^2, so T^2 keeps KD comparable to CE.
        # "batchmean" written out: the sum over classes and batch divided by B, not by B*C.
        return T ** 2 * kl / B



def pearson(a, b, dim):
    """Pearson correlation of a and b along `dim`: the cosine of the two vectors centred on it."""
    a = a - a.mean(dim=dim, keepdim=True)
    b = b - b.mean(dim=dim, keepdim=True)
    # eps as in DIST's code: a constant row (no spread) gives 0, not NaN
    return (a * b).sum(dim=dim) / (a.norm(dim=dim) * b.norm(dim=dim) + 1e-8)


def dist_loss(student_logits, target_logits, T=4.0):
    """DIST (Huang et al. 2022): T^2 * [(1 - inter) + (1 - intra)], a KD loss that matches the
    relations of the two softmaxes, not their values. It was proposed for students far from a
    stronger teacher; ours is a candidate for a pretrained student (train.py --kd-loss dist).

        Y_s = softmax(z_s / T), Y_t = softmax(z_target / T)           (B, C)
        inter = mean over the B clips of pearson(Y_s[b, :], Y_t[b, :])    the order of the classes
        intra = mean over the C classes of pearson(Y_s[:, c], Y_t[:, c])  which clips a class prefers
    Exact matching is not asked for: any Y_s that is an increasing affine map of Y_t costs 0.
    DIST's two weights (beta = gamma = 1 in its code) are 1 here; alpha scales the whole term.
    Needs B >= 2 (intra reads the batch).
    """
    with torch.autocast(device_type=student_logits.device.type, enabled=False):  # float32: exp
        p_s = F.softmax(student_logits.float() / T, dim=1)  # (B, C)
        p_t = F.softmax(target_logits.float().detach() / T, dim=1)  # (B, C), a fixed target
        inter = 1.0 - pearson(p_s, p_t, dim=1).mean()  # (B,) correlations over classes -> mean over B
        intra = 1.0 - pearson(p_s, p_t, dim=0).mean()  # (C,) correlations over the batch -> mean over C
        return T ** 2 * (inter + intra)

@torch.no_grad()
def entropy_weights(teacher_logits, student_logits, T_c=1.0, tau_w=0.1):
    """Confidence-only baseline (EBKD-style): softmax over teachers of c_k / tau_w."""
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        c = confidence(_stack_teachers(teacher_logits, student_logits), T_c)  # (K, B)
        # softmax(c / tau_w) = softmax(-H / (tau_w log C)): lower entropy, more weight.
        return torch.softmax(c / tau_w, dim=0).t()  # (B, K)


@torch.no_grad()
def uniform_weights(teacher_logits, student_logits, **unused):
    """Uniform mixing baseline: w_k = 1/K for every sample (the paper's foil for DATW)."""
    z_t = _stack_teachers(teacher_logits, student_logits)  # (K, B, C)
    K, B = z_t.shape[:2]
    return torch.full((B, K), 1.0 / K, device=z_t.device)


@torch.no_grad()
def single_teacher_weights(teacher_logits, student_logits, k=0, **unused):
    """Single-teacher baseline: all weight on teacher k (0 = ViT, 1 = CNN in train.py's order)."""
    z_t = _stack_teachers(teacher_logits, student_logits)  # (K, B, C)
    K, B = z_t.shape[:2]
    # One-hot rows: fuse_logits then returns teacher k's logits exactly.
    return F.one_hot(torch.full((B,), k, device=z_t.device), K).float()


@torch.no_grad()  # like every rule: the weights choose the target, nothing trains them
def camkd_weights(teacher_logits, student_logits, y, **unused):
    """Label-aware baseline (CA-MKD): w_k = (1 - softmax_k(L_CE^k)) / (K - 1), L_CE^k = CE(z_k, y).

    Paper (Zhang et al. 2022, "Confidence-Aware Multi-Teacher Knowledge Distillation", the
    prediction-weighting equation): a teacher's reliability on a sample is read from its
    cross-entropy against the ground-truth label, so teachers whose prediction is close to the
    one-hot label get large weights. We use that exact form rather than softmax(-L_CE / tau):
    it has no temperature to tune, and for our K = 2 the two coincide at tau = 1, as
        w_k = 1 - e^{L_k} / (e^{L_1} + e^{L_2}) = e^{-L_k} / (e^{-L_1} + e^{-L_2}) = p_k(y) / sum_j p_j(y):
    each teacher's probability of the true class, normalised over the teachers.
    Note: for K > 2 no teacher gets more than 1 / (K - 1), so the form is flatter than a softmax.
    Note: CA-MKD weights the K per-teacher KL losses; we weight the logits into one target
    z_target, as every rule here does, so that only the weights differ between rules.
    student_logits: only checked for its shape (B, C) (the same signature as the other rules).
    """
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        z_t = _stack_teachers(teacher_logits, student_logits)  # (K, B, C) float32
        K, B = z_t.shape[:2]
        if K < 2 or tuple(y.shape) != (B,):
            raise ValueError(f"CA-MKD weighting needs K >= 2 teachers and labels y of shape (B,) = "
                             f"({B},); got K = {K}, y of shape {tuple(y.shape)}.")
        # L_CE^k = -log softmax(z_k)[y], per teacher and sample, at temperature 1 as in CA-MKD
        # (the teacher's own prediction); log_softmax keeps it finite for logits of 1e4.
        log_p = F.log_softmax(z_t, dim=-1)  # (K, B, C)
        L_ce = -log_p.gather(-1, y.view(1, B, 1).expand(K, B, 1)).squeeze(-1)  # (K, B)
        # softmax over teachers (dim 0) of the losses: the share of the blame; 1 - it, over
        # the K - 1 other teachers, sums to 1 per sample: sum_k (1 - s_k) = K - 1.
        w = (1.0 - torch.softmax(L_ce, dim=0)) / (K - 1)  # (K, B)
        return w.t()  # (K, B) -> (B, K)


def teacher_weights(method, teacher_logits, student_logits, y=None, **kw):
    """(B, K) weights by name: "datw", "uniform", "entropy", "camkd" (reads the labels y (B,)),
    "vit" (teacher 0), "cnn" (teacher 1).

    **kw goes to the chosen function (T_c=, tau_w= for "datw" and "entropy"; ignored otherwise).
    y: the clips' labels; every caller may pass them, only "camkd" reads them.
    """
    if method == "datw":
        return datw_weights(teacher_logits, student_logits, **kw)
    if method == "entropy":
        return entropy_weights(teacher_logits, student_logits, **kw)
    if method == "uniform":
        return uniform_weights(teacher_logits, student_logits)
    if method == "camkd":
        if y is None:
            raise ValueError("the 'camkd' weighting reads each clip's label: pass y= (B,) labels.")
        return camkd_weights(teacher_logits, student_logits, y)
    if method in ("vit", "cnn"):
        # Convention: teacher_logits = [z_vit, z_cnn], as train.py passes them.
        return single_teacher_weights(teacher_logits, student_logits, k=0 if method == "vit" else 1)
    raise ValueError(f"unknown teacher weighting {method!r}; "
                     "expected one of 'datw', 'uniform', 'entropy', 'camkd', 'vit', 'cnn'.")


if __name__ == "__main__":
    C = 5  # five toy classes; a logit "peak" of 6 means the model is sure of that class
    peak = lambda k, h=6.0: h * F.one_hot(torch.tensor(k), C).float()
    flat = torch.tensor([0.3, 0.0, 0.2, 0.1, 0.0])  # an unsure model: nearly uniform
    # (name, z_vit, z_cnn, z_s, why): teacher 0 is the ViT, teacher 1 the CNN.
    cases = [
        ("both sure, CNN repeats the student", peak(2), peak(1), peak(1),
         "the CNN has nothing new to teach (d=0)"),
        ("both disagree, ViT unsure", flat, peak(3), peak(1),
         "an unsure teacher is not trusted (c~0)"),
        ("both sure and disagreeing", peak(2), peak(3, 3.0), peak(1),
         "same d, the sharper ViT wins on c"),
        ("student untrained (flat)", peak(2), peak(3, 3.0), torch.zeros(C),
         "d=0.5 for both: confidence decides"),
        ("teachers identical", peak(2), peak(2), peak(1), "identical teachers -> uniform"),
        ("ViT at chance, CNN repeats the student", torch.zeros(C), peak(1), peak(1),
         "e~0 for both: the useless ViT gets ~1/2"),
    ]
    z_vit, z_cnn, z_s = (torch.stack([c[i] for c in cases]) for i in (1, 2, 3))
    w = datw_weights([z_vit, z_cnn], z_s)
    c, d = confidence(torch.stack([z_vit, z_cnn])), discrepancy(torch.stack([z_vit, z_cnn]), z_s)
    print("DATW on crafted samples (T_c=1, tau_w=0.1); teacher 0 = ViT, teacher 1 = CNN\n")
    print(f"{'sample':38s} {'c_vit':>5s} {'d_vit':>5s} {'c_cnn':>5s} {'d_cnn':>5s}"
          f" {'w_vit':>5s} {'w_cnn':>5s}  why")
    for b, (name, *_, why) in enumerate(cases):
        print(f"{name:38s} {c[0, b]:5.2f} {d[0, b]:5.2f} {c[1, b]:5.2f} {d[1, b]:5.2f}"
              f" {w[b, 0]:5.2f} {w[b, 1]:5.2f}  {why}")

    # Dynamics: as the student absorbs the ViT's view, the ViT's discrepancy (and weight) drops
    # and the teacher whose knowledge is still missing takes over. Uniform mixing cannot do this.
    print("\nA student moving from class 1 towards the ViT's answer (class 2); the CNN says 3:")
    zv, zc = peak(2)[None], peak(3, 4.0)[None]
    for a in (0.0, 0.25, 0.5, 1.0):
        zs = (1 - a) * peak(1)[None] + a * zv  # a = how much of the ViT it has absorbed
        wa = datw_weights([zv, zc], zs)[0]
        print(f"  absorbed {a:4.0%} of the ViT: d_vit = {discrepancy(zv, zs)[0]:.2f}, "
              f"d_cnn = {discrepancy(zc, zs)[0]:.2f} -> w_vit = {wa[0]:.2f}, w_cnn = {wa[1]:.2f}")
    print("  Note: when teachers conflict, DATW keeps pulling towards the one the student does\n"
          "  not match yet; the cross-entropy on labels is what arbitrates between them.")

    # Why tau_w = 0.1: the same efficacy gap gives very different contrasts.
    print("\nw_vit for sample 3 ('both sure and disagreeing') as tau_w varies:")
    taus = (1.0, 0.3, 0.1, 0.03)
    sweep = {t: datw_weights([z_vit, z_cnn], z_s, tau_w=t)[2, 0].item() for t in taus}
    print("  " + "  ".join(f"tau_w={t:<4}: {w_t:.2f}" for t, w_t in sweep.items()))
    print("  tau_w=1 barely reacts to an efficacy gap of 0.24; 0.03 already hands over the sample.")

    # The limit in "Left out", and the label-aware baseline that closes it: a ViT sure of the
    # wrong class and different from the student is DATW's favourite; CA-MKD reads the label.
    y = torch.tensor([2])
    zv, zc, zs = peak(4)[None], peak(2, 3.0)[None], peak(1)[None]  # the label is class 2
    print("\nThe ViT is sure of class 4, the CNN less sure of class 2 (the label), the student says 1:")
    for rule in ("datw", "entropy", "camkd"):
        wr = teacher_weights(rule, [zv, zc], zs, y=y)[0]
        print(f"  {rule:8s} w_vit = {wr[0]:.2f}, w_cnn = {wr[1]:.2f}")
    print("  Only camkd reads the label, so only it hands this clip to the teacher that is right.")
