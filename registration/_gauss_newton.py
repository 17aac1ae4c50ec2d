"""Private: inverse-compositional Gauss-Newton refinement of a rigid transform, and its jackknife.

The planning-CT template ``T`` (points ``x`` of the clip box, LPS mm) is matched to the CBCT
``I`` through ``cbct_from_ct = W(p)``. Each iteration samples ``I(W(x; p))``, fits the CBCT's
intensity model ``I ~ a T + b + c . (x - centre)`` (gain, offset and a linear shading: the
metric is a normalised cross-correlation that also forgives a CBCT's cupping and HU scale) by
least squares, maps the CBCT values back to the CT scale ``I' = (I - b - c . r) / a`` and solves
the Gauss-Newton step of ``sum (T(W(x; dp)) - I'(W(x; p)))^2`` with the template's *fixed*
steepest-descent images (Baker & Matthews, IJCV 2004, "Lucas-Kanade 20 years on"):

``dp = H^-1 sum SD^T (I' - T)``, ``SD = [r x grad T, grad T]``, ``r = x - centre``, then
``W(p) <- W(p) o W(dp)^-1``.

``dp = (omega, t)`` is a small rotation vector (radians) about ``centre`` and a translation
(mm); 3 degrees of freedom keep only ``t``. Invalid CBCT samples (NaN: outside the field of
view) are dropped at every iteration. Everything is plain numpy and deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from registration._grid import IsoGrid, SampledImage, gram, inner, project
from registration.transforms import rigid_about, rotation_from_vector

FloatArray = npt.NDArray[np.float64]

MIN_VALID_POINTS = 500


@dataclass(frozen=True, eq=False)
class TemplateLevel:
    """Template points of one pyramid level with their fixed steepest-descent images.

    Parameters
    ----------
    spacing_mm : float
        Lattice spacing of the level, mm.
    points_lps_mm : numpy.ndarray
        ``(N, 3)`` template points, LPS mm.
    values : numpy.ndarray
        ``(N,)`` template values (clipped HU).
    steepest : numpy.ndarray
        ``(N, 6)`` ``[r x grad T, grad T]``; ``grad T`` in value per mm.
    block : numpy.ndarray
        ``(N,)`` spatial block (octant of the clip box about ``centre``) of each point, 0-7.
    centre_lps_mm : numpy.ndarray
        Rotation centre of the parameterisation (the clip box centre), LPS mm.
    design : numpy.ndarray
        ``(N, 5)`` intensity-model regressors ``[T, 1, r / 100 mm]``.
    steepest_gram, design_gram : numpy.ndarray
        ``steepest.T @ steepest`` (6x6) and ``design.T @ design`` (5x5) over all points:
        when every point samples valid CBCT data (the usual case) the normal equations need
        no product over the points.
    """

    spacing_mm: float
    points_lps_mm: FloatArray
    values: FloatArray
    steepest: FloatArray
    block: npt.NDArray[np.int8]
    centre_lps_mm: FloatArray
    design: FloatArray
    steepest_gram: FloatArray
    design_gram: FloatArray

    @property
    def n_points(self) -> int:
        """Number of template points."""
        return int(self.values.size)


def build_level(
    values: npt.NDArray[np.float32],
    grid: IsoGrid,
    centre_lps_mm: FloatArray,
    *,
    keep_fraction: float = 1.0,
) -> TemplateLevel:
    """Template points of a level: valid voxels with a valid central-difference gradient.

    Parameters
    ----------
    values : numpy.ndarray
        ``(k, j, i)`` template on ``grid`` (NaN invalid).
    grid : IsoGrid
        Its lattice.
    centre_lps_mm : numpy.ndarray
        Rotation centre, LPS mm.
    keep_fraction : float, optional
        Keep only this fraction of the points, those with the largest gradient magnitude (the
        edges carry the alignment information; flat liver contributes noise and time).
    """
    v = values.astype(np.float64)
    spacing = grid.spacing_mm
    gradient = np.full((3, *v.shape), np.nan)
    gradient[2, :, :, 1:-1] = (v[:, :, 2:] - v[:, :, :-2]) / (2.0 * spacing)  # d/dx (i)
    gradient[1, :, 1:-1, :] = (v[:, 2:, :] - v[:, :-2, :]) / (2.0 * spacing)  # d/dy (j)
    gradient[0, 1:-1, :, :] = (v[2:] - v[:-2]) / (2.0 * spacing)  # d/dz (k)
    valid = ~np.isnan(v) & ~np.isnan(gradient).any(axis=0)
    flat = np.flatnonzero(valid)
    grad_xyz = np.stack(
        [
            gradient[2].reshape(-1)[flat],
            gradient[1].reshape(-1)[flat],
            gradient[0].reshape(-1)[flat],
        ],
        axis=1,
    )
    if keep_fraction < 1.0 and flat.size > 0:
        magnitude = np.einsum("ij,ij->i", grad_xyz, grad_xyz)
        n_keep = max(1, round(keep_fraction * flat.size))
        # Every point at least as strong as the n_keep-th strongest (ties all kept): the
        # selection depends on the values only, never on a sort's tie order.
        cutoff = np.partition(magnitude, flat.size - n_keep)[flat.size - n_keep]
        chosen = magnitude >= cutoff
        flat = flat[chosen]
        grad_xyz = grad_xyz[chosen]
    points = grid.points_lps_mm(flat)
    r = points - centre_lps_mm
    steepest = np.concatenate([np.cross(r, grad_xyz), grad_xyz], axis=1)
    block = ((r[:, 0] > 0).astype(np.int8) + 2 * (r[:, 1] > 0) + 4 * (r[:, 2] > 0)).astype(np.int8)
    template_values = v.reshape(-1)[flat]
    design = np.column_stack([template_values, np.ones(flat.size), r / 100.0])
    return TemplateLevel(
        spacing_mm=float(spacing),
        points_lps_mm=points,
        values=template_values,
        steepest=steepest,
        block=block,
        centre_lps_mm=np.asarray(centre_lps_mm, dtype=np.float64),
        design=design,
        steepest_gram=gram(steepest),
        design_gram=gram(design),
    )


@dataclass(frozen=True, eq=False)
class LevelOutcome:
    """How one level's refinement ended.

    Parameters
    ----------
    cbct_from_ct : numpy.ndarray
        4x4 final transform of the level.
    iterations : int
        Gauss-Newton iterations taken.
    converged : bool
        Whether the last step moved every template point by less than the tolerance.
    last_step_mm : float
        Largest displacement of a template point by the last step, mm.
    ncc : float
        Normalised cross-correlation of template and CBCT at the final transform.
    valid_fraction : float
        Fraction of template points that sampled valid CBCT data at the final transform.
    stop_condition : str
        Why the level stopped.
    """

    cbct_from_ct: FloatArray
    iterations: int
    converged: bool
    last_step_mm: float
    ncc: float
    valid_fraction: float
    stop_condition: str
    # The sampling at ``cbct_from_ct``, kept for the jackknife and the intensity fit there.
    final: _Linearisation | None = None


@dataclass(frozen=True, eq=False)
class _Linearisation:
    valid: npt.NDArray[np.bool_]
    all_valid: bool
    residual: FloatArray  # I' - T on the valid points
    ncc: float
    gain: float
    sampled: FloatArray  # I on the valid points


def _restricted_gram(
    full: FloatArray, columns: FloatArray, valid: npt.NDArray[np.bool_], all_valid: bool
) -> FloatArray:
    """``columns[valid].T @ columns[valid]`` from the precomputed full product."""
    if all_valid:
        return full
    invalid = ~valid
    if np.count_nonzero(invalid) < valid.size // 2:
        return full - gram(columns[invalid])
    return gram(columns[valid])


def _linearise(
    level: TemplateLevel, moving: SampledImage, cbct_from_ct: FloatArray
) -> _Linearisation | None:
    """Sample the CBCT at the mapped template points and fit the intensity model."""
    sampled = moving.sample_transformed(level.points_lps_mm, cbct_from_ct)
    valid = ~np.isnan(sampled)
    n_valid = int(valid.sum())
    if n_valid < MIN_VALID_POINTS:
        return None
    all_valid = n_valid == valid.size
    design = level.design if all_valid else level.design[valid]
    t = level.values if all_valid else level.values[valid]
    i = sampled if all_valid else sampled[valid]
    normal = _restricted_gram(level.design_gram, level.design, valid, all_valid)
    try:
        coefficients = np.linalg.solve(normal, project(design, i))
    except np.linalg.LinAlgError:
        return None
    gain = float(coefficients[0])
    t_centred = t - t.mean()
    i_centred = i - i.mean()
    denominator = math.sqrt(inner(t_centred, t_centred) * inner(i_centred, i_centred))
    ncc = inner(t_centred, i_centred) / denominator if denominator > 0 else 0.0
    if gain <= 1e-6:
        return _Linearisation(valid, all_valid, np.zeros(n_valid), ncc, gain, i)
    shading = (
        coefficients[1]
        + design[:, 2] * coefficients[2]
        + design[:, 3] * coefficients[3]
        + design[:, 4] * coefficients[4]
    )
    return _Linearisation(valid, all_valid, (i - shading) / gain - t, ncc, gain, i)


def _step(
    level: TemplateLevel,
    linearisation: _Linearisation,
    dof: int,
) -> FloatArray | None:
    """Gauss-Newton step ``(omega_rad(3), t_mm(3))`` on the valid points."""
    valid = linearisation.valid
    steepest = level.steepest if linearisation.all_valid else level.steepest[valid]
    hessian = _restricted_gram(level.steepest_gram, level.steepest, valid, linearisation.all_valid)
    gradient = project(steepest, linearisation.residual)
    return _solve(hessian, gradient, dof)


def _solve(hessian: FloatArray, gradient: FloatArray, dof: int) -> FloatArray | None:
    try:
        if dof == 3:
            return np.concatenate([np.zeros(3), np.linalg.solve(hessian[3:, 3:], gradient[3:])])
        solution: FloatArray = np.asarray(np.linalg.solve(hessian, gradient), dtype=np.float64)
    except np.linalg.LinAlgError:
        return None
    return solution


def _compose_inverse(cbct_from_ct: FloatArray, step: FloatArray, centre: FloatArray) -> FloatArray:
    increment = rigid_about(rotation_from_vector(step[:3]), centre, step[3:])
    composed: FloatArray = cbct_from_ct @ np.linalg.inv(increment)
    return composed


def _largest_motion_mm(step: FloatArray, radius_mm: float) -> float:
    return float(np.linalg.norm(step[3:]) + np.linalg.norm(step[:3]) * radius_mm)


def refine(
    level: TemplateLevel,
    moving: SampledImage,
    cbct_from_ct: FloatArray,
    *,
    dof: int,
    max_iterations: int,
    tolerance_mm: float,
) -> LevelOutcome:
    """Gauss-Newton iterations on one level until the step is below ``tolerance_mm``.

    Parameters
    ----------
    level : TemplateLevel
        Template points of the level.
    moving : SampledImage
        The CBCT at a matching resolution (NaN invalid).
    cbct_from_ct : numpy.ndarray
        4x4 starting transform.
    dof : {3, 6}
        Translations only, or rotations and translations.
    max_iterations : int
        Iteration limit.
    tolerance_mm : float
        Convergence: the last step moved no template point by more than this, mm.
    """
    radius_mm = float(np.max(np.linalg.norm(level.points_lps_mm - level.centre_lps_mm, axis=1)))
    # One step may move a point by at most two lattice spacings: a bad linearisation far
    # from the optimum cannot throw the estimate out of the capture range.
    max_motion_mm = 2.0 * level.spacing_mm
    transform = np.array(cbct_from_ct, dtype=np.float64)
    last_motion = math.inf
    iterations = 0
    linearisation = _linearise(level, moving, transform)
    while linearisation is not None and iterations < max_iterations:
        step = _step(level, linearisation, dof)
        if step is None or not np.all(np.isfinite(step)):
            return _outcome(
                transform,
                iterations,
                False,
                last_motion,
                linearisation,
                level,
                "singular normal equations",
            )
        motion = _largest_motion_mm(step, radius_mm)
        if motion > max_motion_mm:
            step = step * (max_motion_mm / motion)
            motion = max_motion_mm
        transform = _compose_inverse(transform, step, level.centre_lps_mm)
        iterations += 1
        last_motion = motion
        linearisation = _linearise(level, moving, transform)
        if motion < tolerance_mm:
            break
    if linearisation is None:
        return LevelOutcome(
            transform,
            iterations,
            False,
            last_motion,
            -1.0,
            0.0,
            "too few template points inside the CBCT",
        )
    converged = last_motion < tolerance_mm
    reason = (
        f"step {last_motion:.4f} mm below tolerance {tolerance_mm} mm"
        if converged
        else f"iteration limit {max_iterations} reached (last step {last_motion:.4f} mm)"
    )
    return _outcome(transform, iterations, converged, last_motion, linearisation, level, reason)


def _outcome(
    transform: FloatArray,
    iterations: int,
    converged: bool,
    last_motion: float,
    linearisation: _Linearisation,
    level: TemplateLevel,
    reason: str,
) -> LevelOutcome:
    return LevelOutcome(
        cbct_from_ct=transform,
        iterations=iterations,
        converged=converged,
        last_step_mm=float(last_motion),
        ncc=linearisation.ncc,
        valid_fraction=float(linearisation.valid.mean()),
        stop_condition=reason,
        final=linearisation,
    )


def similarity(
    level: TemplateLevel, moving: SampledImage, cbct_from_ct: FloatArray
) -> tuple[float, float]:
    """NCC and valid fraction of the template against the CBCT at a transform (-1, 0 if none)."""
    linearisation = _linearise(level, moving, cbct_from_ct)
    if linearisation is None:
        return -1.0, 0.0
    return linearisation.ncc, float(linearisation.valid.mean())


def jackknife_covariance(
    level: TemplateLevel,
    moving: SampledImage,
    outcome: LevelOutcome,
    *,
    dof: int,
    reference_lps_mm: FloatArray,
) -> FloatArray | None:
    """Delete-one-block jackknife covariance of the displacement of a reference point, mm^2.

    The template points are split into the eight octants of the clip box; leaving one octant
    out, one Gauss-Newton step from the converged transform estimates where the other seven
    alone would put the optimum. The spread of those eight estimates, scaled by ``(n - 1) / n``,
    is the jackknife variance. Unlike the inverse Hessian it does not assume independent voxel
    noise, and it grows when parts of the box disagree (deformation, artefacts).

    Returns
    -------
    numpy.ndarray or None
        3x3 covariance of the reference point's displacement (LPS, mm^2), or ``None`` when
        fewer than four octants hold points.
    """
    linearisation = outcome.final
    if linearisation is None:
        linearisation = _linearise(level, moving, outcome.cbct_from_ct)
    if linearisation is None:
        return None
    valid = linearisation.valid
    blocks = level.block[valid]
    steepest = level.steepest[valid]
    residual = linearisation.residual
    hessians, gradients = [], []
    for b in range(8):
        members = blocks == b
        if np.count_nonzero(members) >= 100:
            hessians.append(gram(steepest[members]))
            gradients.append(project(steepest[members], residual[members]))
    if len(hessians) < 4:
        return None
    hessian_all = np.sum(hessians, axis=0)
    gradient_all = np.sum(gradients, axis=0)
    lever = reference_lps_mm - level.centre_lps_mm
    estimates = []
    for hessian_b, gradient_b in zip(hessians, gradients, strict=True):
        step = _solve(hessian_all - hessian_b, gradient_all - gradient_b, dof)
        if step is None:
            return None
        # A small step (omega, t) moves the reference point by omega x lever + t.
        estimates.append(np.cross(step[:3], lever) + step[3:])
    values = np.asarray(estimates)
    n = len(estimates)
    deviations = values - values.mean(axis=0)
    covariance: FloatArray = (n - 1) / n * (deviations.T @ deviations)
    return covariance
