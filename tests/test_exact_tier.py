"""The exact tier's exclusions, listed for review.

A cell tagged ``nbval-ignore-output`` is executed by nbval but its outputs are not compared.
Only cells that print numbers learned in training or accumulated over long floating-point
computations may be tagged, and only when those numbers reach the notebook's ``results``
(the statistical tier compares them with bands). This file is the reviewed list: for every
notebook, each excluded cell (0-based JSON position, as in the issues) with the reason and
the ``results`` keys that carry its numbers. The tests fail when the tags in the notebooks
and this list disagree, or when a listed key is not a metric of the notebook's baseline.
"""

from __future__ import annotations

from functools import cache

import nbformat
import pytest
from conftest import NOTEBOOKS, source_of

from utils import regression

TAG = "nbval-ignore-output"

# Cells whose output depends on the machine itself (versions, device), not on a computation.
VOLATILE: dict[str, dict[int, str]] = {
    "00_setup": {4: "library versions, platform and device of this machine"},
}

# The Results cell prints `results` itself: every number in it is compared by the bands.
RESULTS = ("the Results cell prints `results`", ["*"])

# notebook stem -> {cell index: (why its output is not compared exactly, results keys)}
EXCLUDED: dict[str, dict[int, tuple[str, list[str]]]] = {
    "00_setup": {41: RESULTS},
    "01_perceptron": {
        47: ("analytic softmax cross-entropy gradient vs autograd: float32 rounding differences", ["ce_grad_max_abs_diff_vs_autograd"]),
        49: ("10 hand-written gradient-descent steps: losses, parameter difference from autograd's steps", ["hand_gd_loss_after_10_steps", "hand_gd_max_param_diff_vs_autograd"]),
        55: RESULTS,
    },
    "02_mlp_backprop": {
        17: ("gradient-check table: float64 rounding noise, its digits change with the BLAS/CPU kernel", ["gradcheck_autograd_below_1e-8", "gradcheck_numeric_below_1e-6"]),
        20: ("NumPy-backprop MLP on digits: training loss log, test accuracy", ["digits_numpy_mlp_acc", "digits_numpy_train_loss"]),
        23: ("XOR: networks out of 20 that learn it, per learning rate, after 3000 steps and at equal lr x steps",
             ["xor_solved_of_20_by_lr", "xor_solved_of_20_at_lr_x_steps"]),
        33: ("spiral: linear model vs MLP accuracy", ["spiral_linear_acc", "spiral_mlp_acc"]),
        39: ("3000-step Adam fits: MSE per hidden width P", ["fit_mse_by_P"]),
        46: ("MNIST-1D MLP, 6000 steps: test accuracy", ["mnist1d_mlp_acc"]),
        49: RESULTS,
    },
    "03_training_deep_nets": {
        20: ("hand-written optimizers on MNIST-1D: test accuracy each", ["optimizer_test_acc"]),
        44: ("batch-norm backward vs autograd: rounding-level float64 differences (last bits differ across CPUs), dx facts",
             ["batchnorm_backward_max_abs_diff", "batchnorm_backward_dx_facts"]),
        48: ("MLP with your batch-norm layer vs nn.BatchNorm1d, 60 SGD steps: loss, rounding-level differences",
             ["bn_mlp_train_loss_first_last", "batchnorm_backward_max_abs_diff", "batchnorm_backward_dx_facts"]),
        56: ("regularizers: train/test accuracy each, early-stopping epoch", ["reg_train_test_acc", "early_stopping_epoch"]),
        64: ("tiny-set overfit, 300 Adam steps: final loss, train accuracy", ["tiny_batch_final_loss", "tiny_batch_train_acc"]),
        65: ("learning-rate sweep: training loss per lr", ["lr_sweep_train_loss", "lr_sweep_best_lr"]),
        68: ("MC dropout: predictive std near and far from the data", ["mc_dropout_std_near_far", "mc_dropout_std_ratio_far_vs_near"]),
        72: RESULTS,
    },
    "04_cnn_filters": {
        25: ("kernel learned by Adam: loss log, max deviation from the Laplacian", ["learned_kernel_max_dev", "learned_kernel_clean_max_dev"]),
        28: ("Fashion-MNIST CNN, 1 epoch: epoch line and test accuracy", ["fashion_cnn_test_acc", "fashion_cnn_epoch1"]),
        47: ("MNIST-1D MLP and CNN, original vs shuffled: 4 test accuracies", ["mnist1d_acc"]),
        51: RESULTS,
    },
    "05_resnet": {
        25: ("plain-7, plain-21, residual-21 after 200 steps: training loss; gradient-norm ratios", ["train_loss_after_200_steps"]),
        31: ("small ResNet on Fashion-MNIST, 1 epoch: epoch line", ["fashion_small_resnet_acc", "fashion_small_resnet_epoch1"]),
        37: ("linear probe / fine-tune / scratch with 5 and 20 labels, 3 draws: accuracies and learning rates", ["few_label_acc_mean", "few_label_acc_std"]),
        42: RESULTS,
    },
    "06_unet_segmentation": {
        31: ("U-Net with and without skips: per-class and mean IoU", ["unet_iou_per_class", "noskip_iou_per_class", "unet_mean_iou_objects", "noskip_mean_iou_objects"]),
        38: ("digit classifier with a dense head: test accuracy", ["fcn_digits_test_acc"]),
        40: ("dense head vs its convolution: max logit difference (float32 rounding)", ["dense_head_equals_conv_head"]),
        42: ("one pass over the canvas vs 33 crops: max logit difference; digits read", ["sliding_equals_crops", "fcn_digits_found", "fcn_digits_read_correctly"]),
        46: RESULTS,
    },
    "07_yolo_detection": {
        28: ("grid detector training: loss log", ["detector_last_step_loss"]),
        40: ("trained detector: AP per class and mAP at IoU 0.5 and 0.75, mAP per IoU threshold, AP@[.5:.95]",
             ["ap50_per_class", "map50", "ap75_per_class", "map75", "map_by_iou_50_to_95", "map50_95"]),
        47: RESULTS,
    },
    "08_autoencoders_vae": {
        11: ("plain vs denoising autoencoder (fresh noise per batch): test MSE per pixel; the plain one's training MSE",
            ["denoising_test_mse", "ae8_train_mse"]),
        16: ("K = 2 autoencoder: range of the codes", ["ae2_code_range"]),
        42: ("K = 2 VAE: ELBO and importance-weighted bounds L_10/100/500 over 500 draws", ["iw_bounds_vae2_nats"]),
        46: ("held classifier: test accuracy, confidence on noise", ["classifier_test_acc", "noise_mean_max_prob"]),
        48: ("VAE training; mini-FID of autoencoder and VAE samples", ["mini_fid"]),
        54: ("beta sweep: reconstruction and KL per beta", ["beta_sweep_rec_kl"]),
        60: ("K = 16 VAE: collapsed dimensions, KL of active and all dims", ["collapsed_dims_of_16", "vae16_kl_nats"]),
        65: RESULTS,
    },
    "09_gan": {
        15: ("coin GAN: p(heads) and the final discriminator", ["coin_p_hat", "coin_D_end"]),
        21: ("1-D discriminator: max |D - D*|", ["max_abs_D_minus_Dstar"]),
        30: ("ring GAN, non-saturating vs saturating: modes and quality; mean D(x), D(G(z)) over the last 500 steps", ["ring_non_saturating", "ring_saturating"]),
        40: ("discriminator trained ahead: its verdict on the untrained generator's samples", ["ring_confident_d"]),
        41: ("from the confident discriminator, each loss with SGD: gradient norms, verdict, coverage; the non-saturating samples' overshoot", ["ring_confident_d"]),
        47: ("ring GAN with 5 generator steps per discriminator step", ["ring_fast_generator"]),
        50: ("held classifier: test accuracy, confidence on noise", ["classifier_test_acc", "noise_mean_max_prob"]),
        51: ("conditional GAN training losses", ["cgan_last_step_losses"]),
        53: ("conditional samples: label accuracy, mini-FID", ["cgan_label_accuracy", "cgan_mini_fid"]),
        55: RESULTS,
    },
    "10_diffusion": {
        27: ("two-moons epsilon-model: final training loss", ["moons_train_loss"]),
        38: ("MMD of DDPM samples vs floor and ceiling", ["moons_mmd2", "moons_mmd2_normalised", "moons_mmd2_ratio_to_floor"]),
        42: ("held classifier accuracy; digits diffusion training loss", ["classifier_test_acc", "digits_train_loss"]),
        43: ("DDPM digit samples: mini-FID and class shares", ["digits_mini_fid", "digits_class_share", "digits_min_class_share"]),
        52: ("DDIM mini-FID per number of steps", ["ddim_scores"]),
        58: RESULTS,
    },
    "11_rnn_lstm": {
        21: ("gradient ratio log10 r per scale of an orthogonal W_hh (long float32 products)", ["log10_grad_ratio_orthogonal_s"]),
        33: ("recall task with and without clipping: median MSE or divergence, gradient norms", ["recall_clipped_median_mse", "recall_unclipped_fails"]),
        38: ("GRU on MNIST-1D: epoch log, test accuracy", ["mnist1d_gru_test_acc"]),
        45: ("character LSTM: best validation NLL, training NLL, test NLL, gain over the bigram", ["names_lstm_best_val", "names_lstm_train_nll", "names_nll", "names_improvement"]),
        51: ("names sampled from the LSTM: share not in the census per temperature", ["names_novel_share"]),
        53: RESULTS,
    },
    "12_transformers": {
        14: ("your attention vs F.scaled_dot_product_attention: max abs error (float32 rounding, differs across CPUs)",
             ["sdpa_max_abs_error", "sdpa_max_error_below_1e-5"]),
        28: ("your MultiHeadAttention vs nn.MultiheadAttention: max abs error (float32 rounding, differs across CPUs)",
             ["mha_max_abs_error", "mha_max_error_below_1e-5"]),
        42: ("tiny GPT: validation curve, best validation NLL, test NLL, gain over the bigram",
             ["names_gpt_best_val", "names_val_nll_at_1000", "names_nll", "names_improvement"]),
        44: ("lab 11's LSTM retrained on the same batches: validation curve, best validation NLL, test NLL",
             ["names_lstm_best_val", "names_val_nll_at_1000", "names_nll"]),
        49: ("names sampled from the tiny GPT (strings; its NLL is the number)", ["names_nll"]),
        53: ("sequence-to-sequence reversal: loss log, exact match", ["reversal_final_train_loss", "reversal_exact_match"]),
        60: RESULTS,
    },
    "13_gnn": {71: RESULTS},
    "14_q_learning": {
        70: ("DQN on CartPole, 3 seeds: episodes, best and last 20-episode means, greedy evaluation", ["dqn_episodes", "dqn_best_ma20", "dqn_last20", "dqn_greedy_mean20"]),
        77: RESULTS,
    },
    "15_visualization_adversarial": {
        3: ("CNN model A: clean test accuracy", ["clean_acc_test2000"]),
        10: ("k-NN label agreement in the trained feature space", ["knn_label_agreement"]),
        14: ("occlusion figure; the dress: model A's prediction, class probabilities, largest rise of p(Dress)", ["dress_example"]),
        21: ("saliency_map vs torch.func: share of agreeing pixels, largest difference (float rounding)", ["saliency_vs_torch_func"]),
        27: ("integrated gradients: completeness error per map", ["ig_completeness_err_pct", "ig_completeness_within_5pct"]),
        31: ("trained vs random-weight CNN: rank correlations of their saliency and gradient x input maps, all pixels and garment only",
             ["randomisation_rank_corr", "randomisation_rank_corr_garment_only"]),
        34: ("activation maximization: p(target) per class", ["activation_max_p_target"]),
        37: ("feature inversion: pixel MSE per block, final relative feature error per image", ["inversion_mse", "inversion_feature_error"]),
        51: ("FGSM and PGD accuracy under attack", ["clean_acc_attack_set", "fgsm_acc_eps0.1", "pgd_acc_eps0.1", "linf_within_eps_plus_1e-6"]),
        55: ("targeted PGD: success rate per eps", ["targeted_success_by_eps"]),
        58: ("model B and transfer accuracies", ["transfer_to_B"]),
        60: ("fooling images: predicted classes, mean confidence", ["noise_predicted_classes", "fooling_mean_confidence"]),
        68: ("style transfer, 150 Adam steps: style and content losses", ["style_loss", "style_loss_drop", "content_loss"]),
        70: RESULTS,
    },
    "16_self_supervised_ebm": {
        15: ("ellipse EBM trained by Adam at four temperatures: learned (a, b)", ["ellipse_learned_ab"]),
        26: ("dictionary learning: energy per round", ["dictionary_energy"]),
        29: ("learned dictionary: sparsity and reconstruction error", ["sparse_coding"]),
        45: ("SimCLR pretraining: loss and embedding spread", ["simclr_final"]),
        47: ("linear probes: raw, random encoder, contrastive encoder, supervised", ["accuracy_10_labels_per_class", "probe_gain_over_random"]),
        52: ("label-efficiency curve: probe vs from-scratch training at 1-10 labels per class", ["labels_per_class_accuracy"]),
        55: ("positives-only pretraining: loss, spreads, collapse ratio", ["positives_only_final_loss", "embedding_spread", "collapse_ratio"]),
        58: RESULTS,
    },
    "17_vision_transformers": {
        26: ("ViT vs CNN on 500 and 8,000 images (350 steps each), with augmentation and mean pooling: test and training accuracy, gaps, gains",
             ["steps_per_run", "test_acc", "train_acc", "cnn_minus_vit", "gain_small_to_large", "vit_large_test_acc",
              "cnn_large_test_acc", "augmentation_effect_small", "mean_pooling_minus_cls_small"]),
        32: ("CNN and ViT test accuracy on test images shifted right by 0-7 pixels", ["shift_test_acc", "shift_7px_drop"]),
        38: ("learned and fixed sin-cos position embeddings: mean cosine similarity of adjacent, distant and mirror patches",
             ["pos_similarity", "pos_similarity_fixed_sincos"]),
        43: ("mean attention distance and normalised entropy per layer and head, trained and untrained ViT",
             ["attention_distance_by_layer", "attention_distance_untrained_by_layer", "attention_distance_max_layer1",
              "attention_distance_min_head", "attention_entropy_by_layer", "attention_entropy_untrained_by_layer"]),
        48: ("class-token attention maps: weight range, misclassified images", ["cls_attention_range", "cls_attention_misclassified_of_6"]),
        51: RESULTS,
    },
    "18_likelihood_models": {
        28: ("PixelCNN training: test/train bits per dim, gain over the independent baseline",
             ["pixelcnn_test_bpd", "pixelcnn_train_bpd", "pixelcnn_gain_bpd"]),
        46: ("RealNVP on two moons: held-out NLL vs the single Gaussian",
             ["flow_test_nll", "gaussian_test_nll", "flow_gain_nats"]),
        52: ("flow samples: biased MMD² vs real floor and noise, ratio, normalised",
             ["flow_mmd2", "flow_mmd2_ratio_to_floor", "flow_mmd2_normalised"]),
        58: RESULTS,
    },
    "19_policy_gradients_control": {
        18: ("REINFORCE vs exact gradient on the small MDP: relative errors, variance and std ratios (sampled)",
             ["mdp_rel_error_100k", "mdp_rel_error_mean_of_400x100", "mdp_variance_ratio", "mdp_component_std_ratio"]),
        28: ("REINFORCE + baseline and actor-critic on CartPole, 3 seeds each: best/last 20-episode means, greedy",
             ["cartpole_best_ma20", "cartpole_last20", "cartpole_greedy_mean20", "cartpole_median_best_ma20"]),
        36: ("world model one-step RMSE after training", ["world_model_rmse"]),
        42: ("MPC on the unicycle: success, median final distance, shooting with 60 samples, actions outside the training box, "
             "world-model error along the executed trajectories",
             ["mpc_success", "mpc_median_final_distance", "mpc_success_shooting_60", "mpc_actions_outside_training_box",
              "mpc_model_rmse_executed"]),
        48: RESULTS,
    },
}


@cache
def _cells(path) -> list:
    return nbformat.read(str(path), as_version=4).cells


def _tagged(path) -> dict[int, str]:
    return {i: source_of(c) for i, c in enumerate(_cells(path))
            if c.cell_type == "code" and TAG in c.metadata.get("tags", [])}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_tagged_cells_are_the_reviewed_list(path):
    tagged = _tagged(path)
    listed = {**EXCLUDED.get(path.stem, {}), **VOLATILE.get(path.stem, {})}
    extra = {i: tagged[i].splitlines()[0][:70] for i in set(tagged) - set(listed)}
    missing = sorted(set(listed) - set(tagged))
    assert not extra, f"cells tagged {TAG} but not listed in tests/test_exact_tier.py: {extra}"
    assert not missing, f"cells listed as excluded but not tagged {TAG}: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_excluded_numbers_reach_results(path):
    listed = EXCLUDED.get(path.stem, {})
    if not listed:
        pytest.skip("no excluded cells")
    metrics = regression.load_baseline(path.stem)["metrics"]
    for index, (why, keys) in listed.items():
        assert why.strip(), f"cell {index}: give the reason"
        assert keys, f"cell {index}: name the results keys that carry its numbers"
        for key in keys:
            if key == "*":
                continue
            hits = [m for m in metrics if m == key or m.startswith((key + ".", key + "["))]
            assert hits, f"cell {index}: {key!r} is not a metric of tests/baselines/{path.stem}.json"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_self_check_reports_stay_in_the_exact_tier(path):
    for index, src in _tagged(path).items():
        assert "checks." not in src, f"cell {index} runs a self-check: its report must be compared exactly"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_exclusion_mechanism(path):
    for i, cell in enumerate(_cells(path)):
        src = source_of(cell)
        assert "NBVAL_IGNORE_OUTPUT" not in src and "NBVAL_SKIP" not in src, (
            f"cell {i}: use the cell tag {TAG} (listed here), not a comment marker")
        assert "nbval-skip" not in cell.metadata.get("tags", []), f"cell {i}: every cell must run"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_results_cell_is_excluded(path):
    last = max(i for i, c in enumerate(_cells(path)) if c.cell_type == "code")
    assert last in _tagged(path), "the Results cell prints learned numbers: tag it and list it"
