"""scikit-learn interoperability without a scikit-learn dependency.

When scikit-learn is installed, crnn's estimators derive from its
``BaseEstimator`` and mixins, so that ``clone``, ``Pipeline``,
``GridSearchCV`` and the estimator tags work exactly as for scikit-learn's
own models. Without it, a minimal ``BaseEstimator`` with the same
``get_params`` / ``set_params`` contract stands in.
"""
import inspect

try:  # pragma: no cover - exercised whichever way the environment is
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

    HAVE_SKLEARN = True
except ImportError:  # pragma: no cover
    HAVE_SKLEARN = False

    class BaseEstimator:
        """Parameters are the keyword arguments of ``__init__``, stored as given."""

        @classmethod
        def _get_param_names(cls):
            signature = inspect.signature(cls.__init__)
            return sorted(p.name for p in signature.parameters.values()
                          if p.name != "self" and p.kind != p.VAR_KEYWORD)

        def get_params(self, deep=True):
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for name, value in params.items():
                if name not in valid:
                    raise ValueError(
                        f"invalid parameter {name!r} for {type(self).__name__}; "
                        f"valid parameters are {valid}"
                    )
                setattr(self, name, value)
            return self

        def __repr__(self):
            args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
            return f"{type(self).__name__}({args})"

    class RegressorMixin:
        _estimator_type = "regressor"

    class ClassifierMixin:
        _estimator_type = "classifier"
