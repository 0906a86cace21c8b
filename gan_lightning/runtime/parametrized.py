"""Pickling modules that hold ``torch.nn.utils.parametrize`` parametrizations (spectral norm, orthogonal, ...).

torch refuses to pickle a parametrized module ("Serialization of parametrized modules is only supported through
state_dict()"), while deep copies work. Launchers that pickle the LightningModule (``gan_ddp_spawn``, Lightning's
``ddp_spawn``) therefore fail on every spectral-norm network. A LightningModule becomes picklable with

    def __getstate__(self): return strip_parametrizations(super().__getstate__())
    def __setstate__(self, state): super().__setstate__(restore_parametrizations(state))

``strip_parametrizations`` replaces every child module (an entry of the state's ``_modules``) that holds
parametrizations somewhere inside by a :class:`StrippedModule`: a copy of the child's module structure (sharing
its tensors) with the parametrizations removed, so each parametrized tensor is its stored original again, plus
one :class:`ParametrizationRecord` per parametrized tensor with the parametrization modules themselves (and
their buffers, e.g. spectral norm's power-iteration vectors ``_u`` and ``_v``). ``restore_parametrizations``
registers the recorded parametrizations again, in order, and puts the recorded tensors back, so the rebuilt
module has the same ``state_dict()`` keys and bit-identical values, gives the same outputs in training and eval
mode, and its power iteration continues from the same vectors. The live module is never modified.

Children are copied together (one memo), so modules shared between them stay shared.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize


@dataclass
class ParametrizationRecord:
    """The parametrizations of one tensor: ``module_path`` (relative to the stripped child, "" for the child
    itself), ``tensor_name``, the parametrization modules in registration order, and the original tensors they
    act on when there are several (``right_inverse`` returned a sequence; None when there is one, which the
    stripped module then holds as ``tensor_name``), and whether it was registered with ``unsafe=True``."""

    module_path: str
    tensor_name: str
    parametrizations: list[nn.Module]
    originals: Optional[list[Tensor]] = None
    unsafe: bool = False


@dataclass
class StrippedModule:
    """A picklable stand-in for a module holding parametrizations: the module without them, and how to put
    them back (applied in order)."""

    module: nn.Module
    records: list[ParametrizationRecord] = field(default_factory=list)


def _parametrized_paths(module: nn.Module) -> list[str]:
    """Paths of the submodules of ``module`` (itself included, as "") that hold parametrizations."""
    return [path for path, m in module.named_modules() if parametrize.is_parametrized(m)]


def _strip(module: nn.Module) -> StrippedModule:
    """Removes the parametrizations of ``module`` (a private copy) in place and records them.

    torch's ``remove_parametrizations`` cannot be used here: a copy shares its parametrized class with the live
    module, and removing deletes the tensor's property from that class. Instead each copied submodule gets its
    original class back and its own attribute dicts rearranged; nothing is computed."""
    records = []
    for path in _parametrized_paths(module):
        m = module.get_submodule(path)
        plists = dict(m.parametrizations.items())
        base = parametrize.type_before_parametrizations(m)
        del m.parametrizations
        m.__class__ = base
        for name, plist in plists.items():
            if plist.is_tensor:
                # The stored original becomes `m.<name>` again.
                _register(m, name, plist.original)
                records.append(ParametrizationRecord(path, name, list(plist), unsafe=plist.unsafe))
            else:
                originals = [getattr(plist, f"original{i}") for i in range(plist.ntensors)]
                records.append(ParametrizationRecord(path, name, list(plist), originals, plist.unsafe))
    return StrippedModule(module, records)


def _register(module: nn.Module, name: str, tensor: Tensor) -> None:
    if isinstance(tensor, nn.Parameter):
        module.register_parameter(name, tensor)
    else:
        module.register_buffer(name, tensor)


def _tensors(module: nn.Module) -> list[tuple[str, Tensor]]:
    return [*module.named_parameters(), *module.named_buffers()]


def _set_exactly(target: Tensor, value: Tensor) -> None:
    """Makes ``target`` (a parameter or buffer, keeping its identity) hold exactly ``value``."""
    if target.shape != value.shape or target.dtype != value.dtype or not torch.equal(target, value):
        with torch.no_grad():
            target.set_(value.detach().clone())


def _restore(stripped: StrippedModule) -> nn.Module:
    module = stripped.module
    for record in stripped.records:
        m = module.get_submodule(record.module_path)
        if record.originals is None:
            stored = getattr(m, record.tensor_name).detach().clone()
        else:
            # Several originals: registering needs the parametrized tensor to start from. Evaluate copies of the
            # parametrizations, so that the recorded ones keep their state.
            with torch.no_grad():
                first, *rest = copy.deepcopy(record.parametrizations)
                value = first(*record.originals)
                for p in rest:
                    value = p(value)
            grad = record.originals[0].requires_grad
            if isinstance(record.originals[0], nn.Parameter):
                value = nn.Parameter(value, requires_grad=grad)
            _register(m, record.tensor_name, value)
        # Registering passes the tensor through the right_inverse of the parametrizations (the identity for
        # spectral norm), which may also update their own state: afterwards, put it all back exactly.
        state = [{name: t.detach().clone() for name, t in _tensors(p)} for p in record.parametrizations]
        for p in record.parametrizations:
            # unsafe: no checks that would evaluate the parametrization (and advance a power iteration).
            parametrize.register_parametrization(m, record.tensor_name, p, unsafe=True)
        for p, saved in zip(record.parametrizations, state):
            current = dict(_tensors(p))
            for name, value in saved.items():
                _set_exactly(current[name], value)
        plist = m.parametrizations[record.tensor_name]
        plist.unsafe = record.unsafe
        if record.originals is None:
            _set_exactly(plist.original, stored)
        else:
            for i, value in enumerate(record.originals):
                _set_exactly(getattr(plist, f"original{i}"), value)
    return module


def strip_parametrizations(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of an ``nn.Module.__getstate__()`` dict in which every child module holding parametrizations is
    replaced by a picklable :class:`StrippedModule`; ``state`` and the live modules are left unchanged."""
    modules = state.get("_modules") or {}
    names = [name for name, child in modules.items() if isinstance(child, nn.Module) and _parametrized_paths(child)]
    if not names:
        return state
    children = [modules[name] for name in names]
    # Copy the modules, not the tensors: the stand-ins hold the live parameters and buffers. Pickling then
    # writes each tensor once, and torch.multiprocessing can share their storage with a spawned process (it
    # needs the storage to outlive the pickling, which a temporary copy would not). One memo for all children,
    # so submodules shared between them stay shared.
    memo: dict[int, Any] = {id(t): t for child in children for t in [*child.parameters(), *child.buffers()]}
    copies = copy.deepcopy(children, memo)
    new_modules = modules.copy()
    for name, child in zip(names, copies):
        new_modules[name] = _strip(child)
    return {**state, "_modules": new_modules}


def restore_parametrizations(state: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`strip_parametrizations`, for a state that has been unpickled or deep-copied: every
    :class:`StrippedModule` child becomes the parametrized module it stands for (in place: the stand-ins'
    tensors become the rebuilt module's)."""
    modules = state.get("_modules") or {}
    if not any(isinstance(child, StrippedModule) for child in modules.values()):
        return state
    new_modules = modules.copy()
    for name, child in modules.items():
        if isinstance(child, StrippedModule):
            new_modules[name] = _restore(child)
    return {**state, "_modules": new_modules}
