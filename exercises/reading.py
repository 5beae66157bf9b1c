"""E5, DATW by hand: compute c, d, e and w for one sample, then find the tests that guard DATW.

One clip, C = 3 classes, the two teachers and the student (datw.py's defaults T_c = 1 and
tau_w = 0.1):
    z_vit = [2, 0, 0]     the ViT teacher says class 0, not very sure
    z_cnn = [0, 3, 1]     the CNN teacher says class 1, sure
    z_s   = [0, 2, 0]     the student says class 1 too
Work on paper, from the equations in datw.py's reading guide (a calculator for exp and log is
fine; calling datw.py is not: the point is to see every step once):
    c_k = 1 - H(softmax(z_k / T_c)) / log C        (natural logarithms)
    d_k = (1 - cos(z_k - mean z_k, z_s - mean z_s)) / 2
    e_k = c_k * d_k,   w = softmax over the two teachers of e_k / tau_w
Give c, d, e to 2 decimals (checked to +-0.01) and w to 2 decimals (+-0.02). Before you compute:
which teacher do you expect to win, and why? Afterwards: is the winner the one that is surer?

Then two questions about tests/test_datw.py, answered with a test's function name:
    guard_centring  a test that fails when discrepancy() compares the raw logits instead of the
                    centred ones (so that z_s + 5 would count as disagreeing with z_s);
    guard_no_grad   a test that fails when datw_weights() lets gradients flow through the weights.
Several tests may qualify; any one of them is right. The check runs your numbers against the
code of datw.py, and the self-test proves that the accepted tests really catch each mistake.
"""
# The example, as the check feeds it to datw.py: one sample, shape (1, C).
Z_VIT = [[2.0, 0.0, 0.0]]
Z_CNN = [[0.0, 3.0, 1.0]]
Z_S = [[0.0, 2.0, 0.0]]


def answers():
    """Your results as a dict: c_vit, c_cnn, d_vit, d_cnn, e_vit, e_cnn, w_vit, w_cnn (floats)
    and guard_centring, guard_no_grad (test function names, e.g. "test_something")."""
    return {
        # softmax([2, 0, 0]) = [0.787, 0.107, 0.107], H = 0.666 nats, log 3 = 1.099
        "c_vit": 0.39,
        # softmax([0, 3, 1]) = [0.042, 0.844, 0.114], H = 0.524 nats
        "c_cnn": 0.52,
        # centred: [4, -2, -2] / 3 and [-2, 4, -2] / 3, cos = -0.5
        "d_vit": 0.75,
        # centred: [-4, 5, -1] / 3 and [-2, 4, -2] / 3, cos = 30 / sqrt(42 * 24) = 0.945
        "d_cnn": 0.03,
        "e_vit": 0.30,
        "e_cnn": 0.01,
        # w_vit = 1 / (1 + exp(-(0.296 - 0.014) / 0.1)): the less sure ViT wins, as it alone
        # says something the student does not already know.
        "w_vit": 0.94,
        "w_cnn": 0.06,
        "guard_centring":
            "test_teacher_identical_to_student_loses_to_equally_confident_different_one",
        "guard_no_grad": "test_no_gradient_through_weights_or_target",
    }
