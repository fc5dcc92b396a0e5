"""search.leave_one_out: the one leave-one-out scorer, for every aggregation rule, raw and
AS-normalised: against values frozen from the scorers it replaced, a brute-force definition,
blocks, counts and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from speakerdb.errors import UsageError
from speakerdb.eval.calibrate import calibrate
from speakerdb.search.leave_one_out import TopStats, loo_matrix, loo_scores, split_loo

RULES = ("max", "mean", "top2", "topk", "centroid")
nan = math.nan


def frozen_gallery():
    """13 seeded vectors of 4 speakers; speaker c's two items share one recording (no own
    gallery once recordings are given) and item 5 (b) points the same way as item 11 (d)."""
    rng = np.random.default_rng(11)
    labels = ["a", "a", "a", "a", "b", "b", "b", "b", "c", "c", "d", "d", "d"]
    recs = ["a1", "a1", "a2", "a3", "b1", "b2", "b3", "b4", "c1", "c1", "d1", "d1", "d2"]
    centres = {s: rng.normal(size=8) for s in "abcd"}
    x = np.stack([centres[s] + 0.9 * rng.normal(size=8) for s in labels])
    x[5] = x[11] * 2.0
    return x, labels, recs


# Computed by the two scorers this module replaced (eval.calibrate.loo_matrix_sums for raw
# max/mean/centroid, search.decision's rule scorer for the rest), k=3, rounded to 1e-6.
FROZEN = {  # (rule, score_norm, asnorm_top, recordings given): the (13, 4) matrix
    ("max", "none", None, True): [
        [0.722874, 0.509398, -0.094405, 0.058349],
        [0.401697, 0.523083, 0.132374, -0.14111],
        [0.722874, 0.624323, 0.20734, -0.206948],
        [0.397755, -0.128008, 0.198755, 0.002559],
        [0.300272, 0.671881, 0.241257, 0.037372],
        [-0.195504, 0.094206, 0.006236, 1.0],
        [0.143681, 0.407814, 0.254972, -0.245762],
        [0.624323, 0.671881, -0.218327, 0.139805],
        [0.20734, 0.006236, nan, 0.126952],
        [0.076298, 0.254972, nan, 0.03561],
        [0.058349, 0.649386, -0.32476, 0.467916],
        [-0.195504, 1.0, 0.006236, 0.758466],
        [-0.043567, 0.758466, 0.126952, 0.758466],
    ],
    ("max", "asnorm", None, True): [
        [4.167559, 1.011235, -0.536331, 0.309361],
        [2.183218, 1.103708, 0.470183, -0.572529],
        [4.167559, 1.369099, 0.816601, -1.327024],
        [2.971025, -0.780419, 1.059848, 0.380573],
        [0.499161, 5.584642, 1.223479, -0.074663],
        [-0.968, -0.064056, -0.060704, 4.005642],
        [0.424693, 4.406493, 1.721836, -1.446881],
        [1.557349, 5.584642, -1.256701, 0.3966],
        [0.304722, -0.532898, nan, 0.476149],
        [-0.103335, 1.106809, nan, 0.114661],
        [0.568753, 0.95793, -1.606778, 3.116568],
        [-0.968, 1.506064, -0.060704, 4.311048],
        [-0.058339, 1.101213, 0.505399, 4.311048],
    ],
    ("max", "asnorm", 1, True): [
        [5477.550945, -1939.221389, -6195.761052, -4399.802527],
        [1784.876448, -1207.825571, -3333.42438, -5799.844504],
        [5477.550945, 42.712378, -2345.620362, -6220.085826],
        [3859.608221, -6873.107418, -1823.977379, -3517.518781],
        [-3159.563233, 4116.730447, -2620.937841, -5601.75112],
        [-6785.401047, -6202.124848, -5300.324887, 7265.203766],
        [-1934.76315, 3662.473706, 306.926223, -4708.251799],
        [996.203204, 4116.730447, -6301.522584, -2755.651697],
        [-4170.742871, -9260.953763, nan, -3853.689197],
        [-5481.164532, -2464.597654, nan, -4767.100725],
        [-3687.777127, -2213.81322, -8051.184759, 3785.002157],
        [-6785.401047, 733.229238, -5300.324887, 5783.983458],
        [-4640.818866, -1332.916327, -3743.972843, 5783.983458],
    ],
    ("max", "none", None, False): [
        [0.722874, 0.509398, -0.094405, 0.058349],
        [0.633012, 0.523083, 0.132374, -0.14111],
        [0.722874, 0.624323, 0.20734, -0.206948],
        [0.397755, -0.128008, 0.198755, 0.002559],
        [0.300272, 0.671881, 0.241257, 0.037372],
        [-0.195504, 0.094206, 0.006236, 1.0],
        [0.143681, 0.407814, 0.254972, -0.245762],
        [0.624323, 0.671881, -0.218327, 0.139805],
        [0.20734, 0.006236, 0.759636, 0.126952],
        [0.076298, 0.254972, 0.759636, 0.03561],
        [0.058349, 0.649386, -0.32476, 0.649386],
        [-0.195504, 1.0, 0.006236, 0.758466],
        [-0.043567, 0.758466, 0.126952, 0.758466],
    ],
    ("mean", "none", None, True): [
        [0.560315, 0.022624, -0.287624, -0.095584],
        [0.379309, 0.077859, -0.039368, -0.184498],
        [0.415542, 0.178511, 0.141819, -0.332574],
        [0.292244, -0.412371, -0.014827, -0.119317],
        [-0.128275, 0.372356, 0.017124, -0.125704],
        [-0.277747, -0.123927, -0.038105, 0.802617],
        [-0.109553, -0.05502, 0.060854, -0.399103],
        [0.382199, 0.232191, -0.219013, -0.00132],
        [0.111016, -0.138434, nan, -0.063857],
        [-0.211016, 0.048864, nan, -0.204128],
        [-0.071787, 0.052936, -0.445154, 0.467916],
        [-0.277747, 0.157054, -0.038105, 0.758466],
        [-0.199444, -0.002623, 0.081281, 0.613191],
    ],
    ("mean", "asnorm", None, True): [
        [4.34708, 0.010991, -2.794477, -0.286423],
        [2.925126, 0.29704, 0.461132, -0.908024],
        [10.616617, 0.909622, 2.86524, -2.136376],
        [1.856959, -2.823432, 1.145593, -0.125076],
        [-0.351482, 3.629471, 1.284191, -0.471782],
        [-1.531998, -0.406429, 0.508819, 4.19278],
        [0.019788, -0.028278, 2.195442, -2.03266],
        [2.973731, 0.826305, -2.369343, -0.123344],
        [1.215829, -1.184876, nan, -0.245217],
        [-0.839541, 0.187593, nan, -0.736934],
        [0.15595, 0.262873, -4.951422, 3.116568],
        [-1.531998, 0.779362, 0.508819, 4.311048],
        [-0.964668, -0.22542, 2.109957, 3.914386],
    ],
    ("mean", "asnorm", 1, True): [
        [4954.282913, -4991.000053, -7048.460947, -6173.081056],
        [2663.323332, -3844.108886, -3971.355832, -6467.675861],
        [3359.402733, -2599.443977, -1921.345865, -7710.295979],
        [2049.823647, -7900.769142, -2880.313531, -4970.228543],
        [-5540.635486, 2007.749478, -4086.649322, -6559.954955],
        [-7060.672444, -6295.946196, -4664.248773, 5963.935193],
        [-2562.709156, -2691.644654, -858.632117, -6503.222766],
        [479.359943, -1133.308637, -5532.763096, -4400.856714],
        [-3229.588686, -6769.107988, nan, -6023.341673],
        [-6449.905841, -4896.127562, nan, -7426.048501],
        [-4441.977772, -4239.767728, -8175.644697, 3785.002157],
        [-7060.672444, -3757.678677, -4664.248773, 5783.983458],
        [-5928.44701, -5005.253307, -3121.19328, 4692.010252],
    ],
    ("mean", "none", None, False): [
        [0.584547, 0.022624, -0.287624, -0.095584],
        [0.463877, 0.077859, -0.039368, -0.184498],
        [0.415542, 0.178511, 0.141819, -0.332574],
        [0.292244, -0.412371, -0.014827, -0.119317],
        [-0.128275, 0.372356, 0.017124, -0.125704],
        [-0.277747, -0.123927, -0.038105, 0.802617],
        [-0.109553, -0.05502, 0.060854, -0.399103],
        [0.382199, 0.232191, -0.219013, -0.00132],
        [0.111016, -0.138434, 0.759636, -0.063857],
        [-0.211016, 0.048864, 0.759636, -0.204128],
        [-0.071787, 0.052936, -0.445154, 0.558651],
        [-0.277747, 0.157054, -0.038105, 0.703926],
        [-0.199444, -0.002623, 0.081281, 0.613191],
    ],
    ("top2", "none", None, True): [
        [0.560315, 0.216539, -0.287624, -0.045624],
        [0.379309, 0.275634, -0.039368, -0.154591],
        [0.562286, 0.462298, 0.141819, -0.28059],
        [0.377338, -0.222475, -0.014827, -0.020504],
        [0.164229, 0.539848, 0.017124, -0.045945],
        [-0.219908, 0.065789, -0.038105, 0.879233],
        [0.07408, 0.169151, 0.060854, -0.346974],
        [0.573703, 0.383043, -0.219013, 0.117005],
        [0.203047, -0.063514, nan, 0.066594],
        [-0.067406, 0.248115, nan, -0.023418],
        [0.030454, 0.394595, -0.445154, 0.467916],
        [-0.219908, 0.547103, -0.038105, 0.758466],
        [-0.096582, 0.260247, 0.081281, 0.613191],
    ],
    ("top2", "asnorm", None, True): [
        [4.34708, 0.619907, -2.794477, 0.070773],
        [2.925126, 1.164622, 0.461132, -0.735114],
        [3.35338, 2.071028, 2.86524, -1.754622],
        [2.84782, -1.16464, 1.145593, 0.440291],
        [0.224778, 5.05976, 1.284191, -0.169969],
        [-1.233183, 0.16728, 0.508819, 4.072604],
        [0.283075, 1.460351, 2.195442, -1.925834],
        [1.610112, 0.918862, -2.369343, 0.251593],
        [0.987578, -0.532122, nan, 0.082143],
        [-0.446949, 1.324832, nan, -0.188101],
        [1.135765, 0.611474, -4.951422, 3.116568],
        [-1.233183, 0.889534, 0.508819, 4.311048],
        [0.148317, 0.158229, 2.109957, 3.914386],
    ],
    ("top2", "asnorm", 1, True): [
        [4954.282913, -3669.972975, -7048.460953, -5234.300414],
        [2663.323332, -2083.758223, -3971.355838, -5729.42382],
        [3584.550478, 21.016986, -1921.345871, -7502.238161],
        [3368.32267, -8433.91077, -2880.313537, -3542.920853],
        [-4298.909242, 3994.237657, -4086.649328, -6074.147835],
        [-7316.55626, -4887.73602, -4664.248779, 6707.963104],
        [-2409.681411, 454.878113, -858.632123, -5542.754529],
        [711.094454, -1393.305572, -5532.763102, -3529.384966],
        [-3111.340053, -7662.361073, nan, -4740.958356],
        [-6697.112265, -2456.503747, nan, -5641.073333],
        [-3027.758643, -3255.267736, -8175.644703, 3785.002157],
        [-7316.55626, -2289.29043, -4664.248779, 5783.983458],
        [-4508.016056, -4808.653672, -3121.193286, 4692.010252],
    ],
    ("top2", "none", None, False): [
        [0.677943, 0.216539, -0.287624, -0.045624],
        [0.517354, 0.275634, -0.039368, -0.154591],
        [0.562286, 0.462298, 0.141819, -0.28059],
        [0.377338, -0.222475, -0.014827, -0.020504],
        [0.164229, 0.539848, 0.017124, -0.045945],
        [-0.219908, 0.065789, -0.038105, 0.879233],
        [0.07408, 0.169151, 0.060854, -0.346974],
        [0.573703, 0.383043, -0.219013, 0.117005],
        [0.203047, -0.063514, 0.759636, 0.066594],
        [-0.067406, 0.248115, 0.759636, -0.023418],
        [0.030454, 0.394595, -0.445154, 0.558651],
        [-0.219908, 0.547103, -0.038105, 0.703926],
        [-0.096582, 0.260247, 0.081281, 0.613191],
    ],
    ("topk", "none", None, True): [
        [0.560315, 0.095334, -0.287624, -0.095584],
        [0.379309, 0.185249, -0.039368, -0.184498],
        [0.415542, 0.356092, 0.141819, -0.332574],
        [0.292244, -0.318335, -0.014827, -0.119317],
        [0.06046, 0.372356, 0.017124, -0.125704],
        [-0.252252, -0.123927, -0.038105, 0.802617],
        [0.023947, -0.05502, 0.060854, -0.399103],
        [0.552268, 0.232191, -0.219013, -0.00132],
        [0.17949, -0.111345, nan, -0.063857],
        [-0.121074, 0.137928, nan, -0.204128],
        [-0.026734, 0.219976, -0.445154, 0.467916],
        [-0.252252, 0.377193, -0.038105, 0.758466],
        [-0.120412, 0.091577, 0.081281, 0.613191],
    ],
    ("topk", "asnorm", None, True): [
        [4.34708, 0.553671, -2.794477, -0.286423],
        [2.925126, 0.934991, 0.461132, -0.908024],
        [10.616617, 1.716243, 2.86524, -2.136376],
        [1.856959, -1.667761, 1.145593, -0.125076],
        [0.082792, 3.629471, 1.284191, -0.471782],
        [-1.819729, -0.406429, 0.508819, 4.19278],
        [0.256376, -0.028278, 2.195442, -2.03266],
        [2.048441, 0.826305, -2.369343, -0.123344],
        [0.999748, -0.615872, nan, -0.245217],
        [-0.327964, 0.399598, nan, -0.736935],
        [2.521842, 0.473506, -4.951422, 3.116568],
        [-1.819729, 0.910615, 0.508819, 4.311048],
        [0.581492, -0.059822, 2.109957, 3.914386],
    ],
    ("topk", "asnorm", 1, True): [
        [4954.282913, -3992.355853, -7048.460953, -6173.081066],
        [2663.323332, -2498.655096, -3971.355838, -6467.675871],
        [3359.402733, -552.085967, -1921.345871, -7710.295989],
        [2049.823647, -7890.097878, -2880.313537, -4970.228552],
        [-4955.122972, 2007.749478, -4086.649328, -6559.954965],
        [-6397.717267, -6295.946196, -4664.248779, 5963.935184],
        [-2529.543506, -2691.644654, -858.632123, -6503.222776],
        [878.216806, -1133.308637, -5532.763102, -4400.856724],
        [-3109.092811, -6747.808557, nan, -6023.341683],
        [-6114.725537, -4255.074938, nan, -7426.04851],
        [-3583.433031, -3691.585241, -8175.644703, 3785.002157],
        [-6397.717267, -2678.519737, -4664.248779, 5783.983458],
        [-4730.110001, -4992.941781, -3121.193286, 4692.010252],
    ],
    ("topk", "none", None, False): [
        [0.584547, 0.095334, -0.287624, -0.095584],
        [0.463877, 0.185249, -0.039368, -0.184498],
        [0.415542, 0.356092, 0.141819, -0.332574],
        [0.292244, -0.318335, -0.014827, -0.119317],
        [0.06046, 0.372356, 0.017124, -0.125704],
        [-0.252252, -0.123927, -0.038105, 0.802617],
        [0.023947, -0.05502, 0.060854, -0.399103],
        [0.552268, 0.232191, -0.219013, -0.00132],
        [0.17949, -0.111345, 0.759636, -0.063857],
        [-0.121074, 0.137928, 0.759636, -0.204128],
        [-0.026734, 0.219976, -0.445154, 0.558651],
        [-0.252252, 0.377193, -0.038105, 0.703926],
        [-0.120412, 0.091577, 0.081281, 0.613191],
    ],
    ("centroid", "none", None, True): [
        [0.748066, 0.039396, -0.30664, -0.110358],
        [0.506408, 0.135576, -0.041971, -0.213015],
        [0.518736, 0.310842, 0.151195, -0.38398],
        [0.343482, -0.718063, -0.015807, -0.137759],
        [-0.168536, 0.781593, 0.018256, -0.145134],
        [-0.364923, -0.165928, -0.040624, 0.926677],
        [-0.143939, -0.076901, 0.064878, -0.460792],
        [0.50216, 0.4102, -0.233493, -0.001525],
        [0.14586, -0.241056, nan, -0.073728],
        [-0.277247, 0.085087, nan, -0.23568],
        [-0.094319, 0.092177, -0.474585, 0.467916],
        [-0.364923, 0.27348, -0.040624, 0.758466],
        [-0.262044, -0.004567, 0.086655, 0.675227],
    ],
    ("centroid", "asnorm", None, True): [
        [5.500253, 0.108108, -3.042179, -0.342915],
        [3.7038, 0.643063, 0.426993, -1.029156],
        [12.488256, 1.695636, 2.987034, -2.386239],
        [2.074355, -4.767959, 1.133023, -0.194408],
        [-0.603211, 7.128442, 1.298786, -0.547411],
        [-2.092327, -0.588781, 0.476431, 4.783352],
        [-0.209012, -0.131683, 2.249279, -2.356109],
        [3.740612, 1.475508, -2.56523, -0.124171],
        [1.430001, -1.800523, nan, -0.283326],
        [-1.249915, 0.395372, nan, -0.857574],
        [0.017738, 0.489404, -5.339422, 3.116568],
        [-2.092327, 1.44995, 0.476431, 4.311048],
        [-1.370353, -0.236927, 2.179566, 4.264358],
    ],
    ("centroid", "asnorm", 1, True): [
        [6831.79491, -4823.283978, -7238.619797, -6320.823979],
        [3934.317934, -3266.936361, -3997.38333, -6752.852484],
        [4391.339502, -1276.132851, -1827.584073, -8224.353129],
        [2562.204327, -10957.689773, -2890.116312, -5154.655209],
        [-5943.250323, 6100.121848, -4075.327979, -6754.255323],
        [-7932.435747, -6715.956993, -4689.441189, 7204.534526],
        [-2906.563852, -2910.461156, -818.399042, -7120.112721],
        [1678.966578, 646.779412, -5677.560925, -4402.897682],
        [-2881.143518, -7795.324269, nan, -6122.04536],
        [-7112.220156, -4533.895549, nan, -7741.567545],
        [-4667.296723, -3847.353361, -8469.952802, 3785.002157],
        [-7932.435747, -2593.427204, -4689.441189, 5783.983458],
        [-6554.44215, -5024.696857, -3067.455362, 5312.36757],
    ],
    ("centroid", "none", None, False): [
        [0.803666, 0.039396, -0.30664, -0.110358],
        [0.594184, 0.135576, -0.041971, -0.213015],
        [0.518736, 0.310842, 0.151195, -0.38398],
        [0.343482, -0.718063, -0.015807, -0.137759],
        [-0.168536, 0.781593, 0.018256, -0.145134],
        [-0.364923, -0.165928, -0.040624, 0.926677],
        [-0.143939, -0.076901, 0.064878, -0.460792],
        [0.50216, 0.4102, -0.233493, -0.001525],
        [0.14586, -0.241056, 0.759636, -0.073728],
        [-0.277247, 0.085087, 0.759636, -0.23568],
        [-0.094319, 0.092177, -0.474585, 0.595784],
        [-0.364923, 0.27348, -0.040624, 0.821658],
        [-0.262044, -0.004567, 0.086655, 0.675227],
    ],
}

@pytest.mark.parametrize("key", sorted(FROZEN, key=str))
def test_equals_the_frozen_values_of_the_former_scorers(key):
    rule, norm, top, with_recs = key
    x, labels, recs = frozen_gallery()
    agg, spk = loo_matrix(x, labels, recs if with_recs else None, rule, 3, score_norm=norm,
                          asnorm_top=top)
    assert spk.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 3, 3, 3]
    want = np.array(FROZEN[key])
    assert agg.shape == want.shape and agg.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(agg), np.isnan(want))
    np.testing.assert_allclose(agg, want, rtol=0, atol=1.5e-6, equal_nan=True)


def test_frozen_cases_differ_between_rules():
    """The frozen matrices tell the rules apart (a rule silently running as another fails)."""
    for norm, top, w in (("none", None, True), ("asnorm", 1, True)):
        mats = [np.nan_to_num(np.array(FROZEN[(r, norm, top, w)])) for r in RULES]
        for i in range(len(mats)):
            for j in range(i + 1, len(mats)):
                assert np.abs(mats[i] - mats[j]).max() > 1e-3, (RULES[i], RULES[j])


@pytest.fixture
def labelled():
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(5, 12))
    spk = np.repeat(np.arange(5), [4, 3, 5, 2, 4])
    x = centres[spk] + 0.8 * rng.normal(size=(len(spk), 12))
    recs = [f"r{i // 2}" for i in range(len(spk))]  # pairs of items share a recording
    return x, [f"s{s}" for s in spk], recs


def unit(a):
    a = np.asarray(a, np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def brute_loo(x, labels, recs, rule, k=3, norm=False, top_n=None):
    """Item by item, speaker by speaker, with cohort_stats and asnorm from search.asnorm."""
    from speakerdb.search.asnorm import asnorm, cohort_from_speakers, cohort_stats

    x = unit(x)
    recs = list(range(len(x))) if recs is None else recs
    names = sorted(set(labels))
    cohort = cohort_from_speakers(x, labels)
    target, nontarget = [], []
    for i in range(len(x)):
        for s in names:
            gal = [j for j in range(len(x)) if labels[j] == s
                   and not (labels[i] == s and recs[j] == recs[i] and labels[j] == labels[i])]
            if not gal:
                continue
            sims = np.array([x[i] @ x[j] for j in gal])
            order = np.argsort(-sims, kind="stable")
            if rule == "max":
                val, rep = sims[order[0]], x[gal[order[0]]]
            elif rule in ("mean", "centroid"):
                rep = unit(x[gal].sum(axis=0))
                val = sims.mean() if rule == "mean" else x[i] @ rep
            else:
                take = order[: (2 if rule == "top2" else k)]
                val, rep = sims[take].mean(), unit(x[[gal[t] for t in take]].sum(axis=0))
            if norm:
                ex = np.array([[m == s for m in cohort.speakers]])
                es = cohort_stats(rep[None], cohort, top_n, ex)
                ts = cohort_stats(x[i][None], cohort, top_n, ex)
                val = float(asnorm(np.array([val]), es, ts)[0])
            (target if labels[i] == s else nontarget).append(val)
    return np.array(target), np.array(nontarget)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("norm,top_n", [(False, None), (True, None), (True, 2)])
@pytest.mark.parametrize("with_recordings", [True, False])
def test_loo_scores_equal_brute_force(labelled, rule, norm, top_n, with_recordings):
    x, labels, recs = labelled
    recs = recs if with_recordings else None
    got = loo_scores(x, labels, recs, rule, k=3, score_norm="asnorm" if norm else "none",
                     asnorm_top=top_n)
    want = brute_loo(x, labels, recs, rule, k=3, norm=norm, top_n=top_n)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-7)  # float32 cohort rounding


@pytest.mark.parametrize("top_n", [1, 3, 6, 7])
def test_top_stats_without_one_column_match_cohort_stats(top_n):
    from speakerdb.search.asnorm import Cohort, cohort_stats

    rng = np.random.default_rng(5)
    cohort = Cohort.from_vectors(rng.normal(size=(7, 6)))
    x = unit(rng.normal(size=(9, 6)))
    x[3] = cohort.vectors[2]  # a tie with a cohort member
    excl = np.array([-1, 0, 1, 2, 3, 4, 5, 6, 2])
    mask = np.zeros((9, 7), bool)
    mask[np.arange(9)[excl >= 0], excl[excl >= 0]] = True
    got = TopStats(x @ cohort.vectors.T.astype(np.float64), top_n).without(excl)
    want = cohort_stats(x, cohort, top_n, mask)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_top_stats_without_each_equals_one_column_at_a_time():
    rng = np.random.default_rng(8)
    s = rng.normal(size=(6, 5))
    s[2, 1] = s[2, 3]  # a tie within a row
    for top_n in (1, 2, 4, 5):
        stats = TopStats(s, top_n)
        mean, std = stats.without_each()
        for c in range(5):
            m, d = stats.without(np.full(6, c))
            np.testing.assert_array_equal(mean[:, c], m)
            np.testing.assert_array_equal(std[:, c], d)


# the gallery of many speakers with several recordings --------------------------------------

@pytest.fixture
def recorded():
    rng = np.random.default_rng(21)
    labels = ["b", "a", "b", "c", "a", "b", "c", "d", "a", "e", "e", "b", "c", "a"]
    # e's two items share a recording: no target for them once recordings are given
    recordings = ["r1", "r2", "r1", "r3", "r2", "r4", "r5", "r6", "r7", "r8", "r8", "r4",
                  "r5", "r9"]
    centres = {s: rng.normal(size=12) for s in set(labels)}
    x = np.array([centres[s] + 0.8 * rng.normal(size=12) for s in labels]) * 2.5
    return x, labels, recordings


def test_loo_counts(recorded):
    x, labels, recordings = recorded
    t, n = loo_scores(x, labels)
    assert len(t) == len(labels) - 1  # "d" has a single item
    assert len(n) == len(labels) * 4
    t, _ = loo_scores(x, labels, recordings)
    # d alone; e's two items share r8; b's r1 pair and r4 pair still see each other
    assert len(t) == len(labels) - 3


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("norm", ["none", "asnorm"])
def test_loo_blocks_agree(recorded, rule, norm, monkeypatch):
    import speakerdb.search.leave_one_out as mod

    x, labels, recordings = recorded
    whole = loo_matrix(x, labels, recordings, rule, 2, score_norm=norm)[0]
    monkeypatch.setattr(mod, "_BLOCK_ELEMENTS", 20)  # one row per block
    part = loo_matrix(x, labels, recordings, rule, 2, score_norm=norm)[0]
    np.testing.assert_allclose(part, whole, rtol=1e-12, atol=1e-15, equal_nan=True)


def test_loo_labels_need_not_be_strings():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(6, 4))
    t1, n1 = loo_scores(x, [3, 1, 3, 2, 1, 2], recordings=[0, 1, 2, 3, 4, 5])
    t2, n2 = loo_scores(x, ["3", "1", "3", "2", "1", "2"])
    np.testing.assert_array_equal(t1, t2)
    np.testing.assert_array_equal(n1, n2)


def test_loo_errors(recorded):
    x, labels, recordings = recorded
    with pytest.raises(UsageError, match="aggregation"):
        loo_scores(x, labels, rule="median")
    with pytest.raises(UsageError, match="labels"):
        loo_scores(x, labels[:-1])
    with pytest.raises(UsageError, match="recording"):
        loo_scores(x, labels, recordings[:-1])
    bad = x.copy()
    bad[3] = 0
    with pytest.raises(UsageError, match="zeros"):
        loo_scores(bad, labels)
    with pytest.raises(UsageError):
        loo_scores(np.zeros((0, 4)), [])
    with pytest.raises(UsageError):
        loo_scores(x[0], labels[:1])
    with pytest.raises(UsageError, match="score_norm"):
        loo_scores(x, labels, score_norm="znorm")


def test_split_loo_orders_targets_by_item_and_nontargets_by_item_then_speaker():
    agg = np.array([[0.9, 0.1, 0.2], [nan, 0.3, 0.4], [0.5, 0.6, 0.7]])
    t, n = split_loo(agg, np.array([0, 0, 2]))
    assert t.tolist() == [0.9, 0.7]
    assert n.tolist() == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]


def test_loo_then_calibrate(recorded):
    x, labels, recordings = recorded
    t, n = loo_scores(x, labels, recordings)
    cal = calibrate(t, n, method="eer", score_norm="asnorm", dim=64)
    assert cal.targets == len(t) and cal.nontargets == len(n)
    assert cal.score_norm == "asnorm" and cal.dim == 64
