//! The tape: a Wengert list of the ops that gradients will flow back through.
//!
//! Reverse-mode automatic differentiation in three sentences. While the forward
//! pass runs, every op whose inputs need gradients appends an `Entry` to the
//! tape: which node it produced, which nodes it read, and a closure that turns
//! the gradient of its output into gradients of its inputs (the op's local
//! backward rule, holding only the tensors that rule needs). `backward` starts
//! from the loss with gradient 1 and walks the tape from the end: each entry takes
//! its output's accumulated gradient, runs its closure, and adds the results into
//! its inputs' gradients. Because the tape is in the order the ops ran, an entry's
//! output gradient is complete before the entry is reached.
//!
//! Memory: an entry's closure is consumed when it runs, so the tensors it saved
//! are freed right then; an intermediate's gradient is dropped as soon as its
//! entry has used it; only leaves (parameters) keep their gradients. The tape is
//! emptied by `backward`, or by [`clear_tape`] when a forward pass is abandoned.
//!
//! Misuse is an error, not a silent no-op. Because `backward` empties the tape,
//! the graph behind a value can be gone: a second `backward` on the same loss,
//! one after [`clear_tape`], one on loss A after loss B's `backward` consumed the
//! tape they shared, or a value built after a `backward` from an intermediate of
//! the consumed pass. Before it runs anything, `backward` checks that every op
//! the value depends on is still on the tape, and otherwise returns an error that
//! says so and leaves the tape and every gradient as they were. (To train on
//! several losses, sum them and call `backward` once.) Two other cases are not
//! consumption: a leaf has no graph, so `backward` on it just adds the seed to
//! its gradient, every time; and a constant (data, a detached value, anything
//! computed under [`no_grad`]) has nothing to differentiate, which `Var::backward`
//! reports as an error of its own, since a loss that reaches no parameter is a bug.
//!
//! There is one tape per thread. The engine's parallelism lives inside the
//! tensor kernels, so the tape itself is only ever touched by the thread that
//! builds the model's forward pass.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use tensor::{Result, Tensor, TensorError};

use crate::profile;

/// Identifies a value that gradients can flow to. Ids are never reused.
pub type NodeId = u64;

/// Where a leaf (a parameter) accumulates its gradient across backward passes.
pub type GradCell = Rc<RefCell<Option<Tensor>>>;

/// A node an op read: its id, its shape, and its gradient cell if it is a leaf.
#[derive(Clone)]
pub(crate) struct Input {
    pub id: NodeId,
    pub shape: Vec<usize>,
    pub leaf: Option<GradCell>,
}

/// A local backward rule: from the output's gradient, the gradient of each input
/// (in the order the inputs were recorded), `None` for an input that gets none.
pub(crate) type BackwardFn = Box<dyn FnOnce(&Tensor) -> Result<Vec<Option<Tensor>>>>;

/// One recorded op.
struct Entry {
    op: &'static str,
    output: NodeId,
    /// `None` for an input that needs no gradient (a constant).
    inputs: Vec<Option<Input>>,
    backward: BackwardFn,
}

#[derive(Default)]
struct Tape {
    entries: Vec<Entry>,
}

thread_local! {
    static TAPE: RefCell<Tape> = RefCell::new(Tape::default());
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
    static NEXT_ID: Cell<NodeId> = const { Cell::new(0) };
}

/// A fresh node id.
pub(crate) fn next_id() -> NodeId {
    NEXT_ID.with(|n| {
        let id = n.get();
        n.set(id + 1);
        id
    })
}

/// True unless inside [`no_grad`].
pub fn is_recording() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// Runs `f` without recording anything on the tape: for sampling and evaluation,
/// where no gradient is wanted and the saved tensors would only cost memory.
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore;
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
    let _restore = Restore;
    f()
}

/// Appends an op to the tape.
pub(crate) fn record(op: &'static str, output: NodeId, inputs: Vec<Option<Input>>, backward: BackwardFn) {
    TAPE.with(|t| {
        t.borrow_mut().entries.push(Entry {
            op,
            output,
            inputs,
            backward,
        })
    });
}

/// The number of ops on this thread's tape (for tests and memory checks).
pub fn tape_len() -> usize {
    TAPE.with(|t| t.borrow().entries.len())
}

/// Drops every recorded op, freeing what they saved: for a forward pass whose
/// backward will not run.
pub fn clear_tape() {
    let entries = TAPE.with(|t| std::mem::take(&mut t.borrow_mut().entries));
    drop(entries);
}

/// Adds `g` into the gradient slot `slot`.
fn accumulate(slot: &mut Option<Tensor>, g: Tensor) -> Result<()> {
    *slot = Some(match slot.take() {
        None => g,
        // The sum is written over whichever of the two nothing else holds.
        Some(old) => Tensor::add_consuming(old, g)?,
    });
    Ok(())
}

/// Checks that the op producing `root`, and every op before it that `root`
/// depends on, is still on the tape: the same reverse walk as `backward_from`,
/// following ids instead of gradients. A non-leaf id left waiting at the end is
/// one whose op an earlier `backward` or [`clear_tape`] removed.
fn check_graph(entries: &[Entry], root: NodeId) -> Result<()> {
    let mut waiting: HashSet<NodeId> = HashSet::from([root]);
    for entry in entries.iter().rev() {
        if waiting.remove(&entry.output) {
            let inner = entry.inputs.iter().flatten().filter(|i| i.leaf.is_none());
            waiting.extend(inner.map(|i| i.id));
        }
    }
    if waiting.is_empty() {
        return Ok(());
    }
    let what = if waiting.contains(&root) {
        "the graph of this value was"
    } else {
        "part of the graph of this value (an intermediate it was computed from) was"
    };
    Err(TensorError::InvalidArgument {
        op: "backward",
        msg: format!(
            "{what} already consumed by an earlier backward() or clear_tape(); recompute the \
             forward pass, or sum the losses and call backward() once"
        ),
    })
}

/// Back-propagates from node `root`, whose gradient is `seed`, through the whole
/// tape, then empties the tape. Leaves reached get their gradients added to
/// their cells. Fails, changing nothing, when part of `root`'s graph is no longer
/// on the tape (see the module doc).
pub(crate) fn backward_from(root: NodeId, root_leaf: Option<&GradCell>, seed: Tensor) -> Result<()> {
    if let Some(cell) = root_leaf {
        return accumulate(&mut cell.borrow_mut(), seed);
    }
    let entries = TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        check_graph(&tape.entries, root)?;
        Ok::<_, TensorError>(std::mem::take(&mut tape.entries))
    })?;
    let mut grads: HashMap<NodeId, Tensor> = HashMap::new();
    grads.insert(root, seed);
    for entry in entries.into_iter().rev() {
        // An op the root does not depend on: dropping it frees what it saved.
        let Some(g) = grads.remove(&entry.output) else {
            continue;
        };
        let started = profile::timer();
        let input_grads = (entry.backward)(&g)?;
        profile::add_backward(entry.op, started);
        let started = profile::timer();
        if input_grads.len() != entry.inputs.len() {
            return Err(TensorError::InvalidArgument {
                op: "backward",
                msg: format!(
                    "the rule of {} returned {} gradients for {} inputs",
                    entry.op,
                    input_grads.len(),
                    entry.inputs.len()
                ),
            });
        }
        for (input, gi) in entry.inputs.into_iter().zip(input_grads) {
            let (Some(input), Some(gi)) = (input, gi) else {
                continue;
            };
            if gi.shape() != input.shape {
                return Err(TensorError::ShapeMismatch {
                    op: entry.op,
                    lhs: input.shape,
                    rhs: gi.shape().to_vec(),
                });
            }
            match &input.leaf {
                Some(cell) => accumulate(&mut cell.borrow_mut(), gi)?,
                None => {
                    let mut slot = grads.remove(&input.id);
                    accumulate(&mut slot, gi)?;
                    grads.extend(slot.map(|s| (input.id, s)));
                }
            }
        }
        profile::add_backward(profile::ACCUMULATE, started);
    }
    profile::reset_clock();
    Ok(())
}
