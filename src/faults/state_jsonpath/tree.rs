//! The compact form of a document that `state_jsonpath` evaluates over: built once per state
//! file, then shared by every detector and learned pattern that queries it.
//!
//! Why not walk the `serde_json::Value`: an orchestrator state is thousands of separately
//! allocated maps with heap-allocated keys, and a filter over 10,000 features spends its time
//! chasing pointers between them (~2.5 ms a query). Here every value is a 16-byte node in one
//! array, the direct children of a container are adjacent, keys are interned to numbers,
//! string values sit in one text buffer, and each node carries its JavaScript truthiness, so
//! testing a feature reads a few adjacent cache lines and compares integers.
//!
//! The tree is always evaluated in step with the `Value` it was built from (same shape, same
//! child order), which is where the selected values are taken from: results are the caller's
//! own `&Value`s, never copies.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::Value;

use super::{Atom, StatePath, Step};

type NodeId = u32;
/// An interned key.
type Symbol = u32;
/// The one inherited property gstack's patterns read: a list's or a string's length.
const LENGTH: &str = "length";
/// The "key" of the root and of array items.
const NO_KEY: Symbol = Symbol::MAX;
/// Objects with more members than this are also indexed by key: scanning is fastest for the
/// handful of keys a feature has, a hash for an object keyed by, say, feature number.
const SCAN_MAX: usize = 16;
/// A timed selection reads the clock before a step once the steps so far looked at this
/// many items.
const ITEMS_PER_LOOK: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// null, a boolean or a number: only its truthiness matters to the grammar.
    Scalar,
    /// `first..first + len` is the string in `text`.
    String,
    /// `first..first + len` are the item nodes.
    Array,
    /// `first..first + len` are the member nodes.
    Object,
}

/// One value of the current selection: a node of the document with its `Value`, or a
/// list's `length`, which the document does not hold.
#[derive(Clone, Copy)]
enum Item<'v> {
    Node(NodeId, &'v Value),
    Length(usize),
}

#[derive(Clone, Copy, Debug)]
struct Node {
    /// The key under which the node sits in its object, else [`NO_KEY`]: kept in the node
    /// so that finding a member and testing it read the same cache line.
    key: Symbol,
    kind: Kind,
    /// JavaScript truthiness: null, false, 0, NaN and "" are falsy; `[]` and `{}` are not.
    truthy: bool,
    first: u32,
    len: u32,
}

impl Node {
    fn scalar(truthy: bool) -> Node {
        Node {
            key: NO_KEY,
            kind: Kind::Scalar,
            truthy,
            first: 0,
            len: 0,
        }
    }

    /// The child nodes of a container, the bytes of a string in `text`.
    fn span(self) -> std::ops::Range<usize> {
        self.first as usize..(self.first + self.len) as usize
    }
}

/// A document in compact form. Private to the module: it only ever meets the `Value` it was
/// built from.
#[derive(Debug)]
pub(super) struct Tree {
    nodes: Vec<Node>,
    /// The member offsets of objects wider than [`SCAN_MAX`], by object and key.
    wide_members: HashMap<(NodeId, Symbol), u32>,
    symbols: HashMap<Box<str>, Symbol>,
    /// Every string value, back to back.
    text: String,
}

/// A filter atom with its field resolved to a symbol (`None`: a key the document never uses,
/// so the field is missing everywhere).
struct Test<'p> {
    field: Option<Symbol>,
    /// The field is `length`, which lists and strings answer without having it as a key.
    length: bool,
    check: Check<'p>,
    /// Where in the last object the field was found: the items of an array mostly share
    /// one shape, so the next item usually has it at the same place.
    offset: Cell<usize>,
}

#[derive(Clone, Copy)]
enum Check<'p> {
    Truthy,
    Falsy,
    Equals(&'p str),
    NotEquals(&'p str),
}

impl Tree {
    /// What the compact form keeps on the heap, as allocated (see [`super::footprint`]).
    pub(super) fn heap_bytes(&self) -> usize {
        use super::footprint::{block, table_bytes};
        use std::mem::size_of;
        // A table's buckets from its capacity (hashbrown keeps 1/8 of them empty, or one
        // below 8 buckets).
        let table = |capacity: usize, size: usize| match capacity {
            0 => 0,
            1..=7 => table_bytes((capacity + 1).next_power_of_two(), size),
            _ => table_bytes((capacity / 7 * 8).next_power_of_two(), size),
        };
        let wide = table(
            self.wide_members.capacity(),
            size_of::<((NodeId, Symbol), u32)>(),
        );
        let keys: usize = self.symbols.keys().map(|k| block(k.len())).sum();
        let symbols = table(self.symbols.capacity(), size_of::<(Box<str>, Symbol)>()) + keys;
        block(self.nodes.capacity() * size_of::<Node>())
            + wide
            + symbols
            + block(self.text.capacity())
    }

    /// Builds the tree breadth-first (no recursion, whatever the nesting), reserving each
    /// container's children as one adjacent block.
    pub(super) fn build(root: &Value) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node::scalar(false)],
            wide_members: HashMap::new(),
            symbols: HashMap::new(),
            text: String::new(),
        };
        let mut pending: VecDeque<(usize, Symbol, &Value)> = VecDeque::from([(0, NO_KEY, root)]);
        while let Some((id, key, value)) = pending.pop_front() {
            let node = match value {
                Value::Null => Node::scalar(false),
                Value::Bool(b) => Node::scalar(*b),
                Value::Number(n) => {
                    Node::scalar(n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()))
                }
                Value::String(s) => tree.store_text(s),
                Value::Array(items) => {
                    let first = tree.reserve(items.len());
                    for (offset, item) in items.iter().enumerate() {
                        pending.push_back((first + offset, NO_KEY, item));
                    }
                    tree.container(Kind::Array, first, items.len())
                }
                Value::Object(members) => {
                    let first = tree.reserve(members.len());
                    let wide = members.len() > SCAN_MAX;
                    for (offset, (key, member)) in members.iter().enumerate() {
                        let key = tree.intern(key);
                        if wide {
                            tree.wide_members.insert((narrow(id), key), narrow(offset));
                        }
                        pending.push_back((first + offset, key, member));
                    }
                    tree.container(Kind::Object, first, members.len())
                }
            };
            tree.nodes[id] = Node { key, ..node };
        }
        tree
    }

    fn store_text(&mut self, text: &str) -> Node {
        let first = narrow(self.text.len());
        self.text.push_str(text);
        Node {
            key: NO_KEY,
            kind: Kind::String,
            truthy: !text.is_empty(),
            first,
            len: narrow(text.len()),
        }
    }

    fn reserve(&mut self, count: usize) -> usize {
        let first = self.nodes.len();
        self.nodes.resize(first + count, Node::scalar(false));
        first
    }

    fn container(&self, kind: Kind, first: usize, len: usize) -> Node {
        Node {
            key: NO_KEY,
            kind,
            truthy: true,
            first: narrow(first),
            len: narrow(len),
        }
    }

    fn intern(&mut self, text: &str) -> Symbol {
        if let Some(&symbol) = self.symbols.get(text) {
            return symbol;
        }
        let symbol = narrow(self.symbols.len());
        self.symbols.insert(text.into(), symbol);
        symbol
    }

    fn symbol(&self, text: &str) -> Option<Symbol> {
        self.symbols.get(text).copied()
    }

    /// Every value `path` selects in `root`, which must be the value this tree was built from.
    pub(super) fn select<'v>(&self, root: &'v Value, path: &StatePath<'_>) -> Vec<Cow<'v, Value>> {
        self.select_until(root, path, None).unwrap_or_default()
    }

    /// [`Tree::select`], given up (`None`) once `until` has passed: the clock is read every
    /// [`ITEMS_PER_LOOK`] items a step looks at, so the work past it is bounded.
    pub(super) fn select_until<'v>(
        &self,
        root: &'v Value,
        path: &StatePath<'_>,
        until: Option<Instant>,
    ) -> Option<Vec<Cow<'v, Value>>> {
        let mut current: Vec<Item<'v>> = vec![Item::Node(0, root)];
        let mut next: Vec<Item<'v>> = Vec::new();
        let mut looked = 0usize;
        let mut in_time = |count: usize| {
            looked += count;
            if looked < ITEMS_PER_LOOK {
                return true;
            }
            looked = 0;
            until.is_none_or(|until| Instant::now() < until)
        };
        for step in &path.steps {
            if !in_time(current.len()) {
                return None;
            }
            next.clear();
            match step {
                Step::Field(name) => {
                    let key = self.symbol(name);
                    for item in &current {
                        if let Item::Node(id, value) = *item {
                            next.extend(self.field(id, value, name, key));
                        }
                    }
                }
                Step::Wildcard => {
                    for item in &current {
                        match *item {
                            Item::Node(id, Value::Array(items)) => next
                                .extend(self.items(id).zip(items).map(|(i, v)| Item::Node(i, v))),
                            // gstack's evaluator spread arrays and kept anything else as is.
                            other => next.push(other),
                        }
                    }
                }
                Step::Filter(atoms) => {
                    let tests: Vec<Test> = atoms.iter().map(|atom| self.test(atom)).collect();
                    for item in &current {
                        match *item {
                            // Only the items that pass are paired with their values: the
                            // others' `Value`s are never touched.
                            Item::Node(id, Value::Array(items)) => next.extend(
                                self.items(id)
                                    .enumerate()
                                    .filter(|&(_, item)| self.holds(&tests, Some(item)))
                                    .filter_map(|(index, item)| {
                                        Some(Item::Node(item, items.get(index)?))
                                    }),
                            ),
                            // A single value is filtered as a one-element list.
                            Item::Node(id, _) if self.holds(&tests, Some(id)) => next.push(*item),
                            // A length is a number: it has no fields.
                            Item::Length(_) if self.holds(&tests, None) => next.push(*item),
                            _ => {}
                        }
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
            if current.is_empty() {
                break;
            }
        }
        let selected = current
            .into_iter()
            .map(|item| match item {
                Item::Node(_, value) => Cow::Borrowed(value),
                Item::Length(len) => Cow::Owned(Value::from(len)),
            })
            .collect();
        Some(selected)
    }

    /// `value[name]` as gstack reads it: an object's own member, a list's `length` or
    /// canonical index; scalars have no fields.
    fn field<'v>(
        &self,
        id: NodeId,
        value: &'v Value,
        name: &str,
        key: Option<Symbol>,
    ) -> Option<Item<'v>> {
        match value {
            Value::Object(_) => {
                let member = self.member(id, key?)?;
                Some(Item::Node(member, value.get(name)?))
            }
            Value::Array(items) if name == LENGTH => Some(Item::Length(items.len())),
            Value::Array(items) => {
                let index = array_index(name)?;
                let item = items.get(index)?;
                Some(Item::Node(
                    self.nodes[id as usize].first + narrow(index),
                    item,
                ))
            }
            _ => None,
        }
    }

    fn items(&self, id: NodeId) -> impl Iterator<Item = NodeId> {
        self.nodes[id as usize].span().map(narrow)
    }

    fn test<'p>(&self, atom: &Atom<'p>) -> Test<'p> {
        let (field, check) = match *atom {
            Atom::Truthy(field) => (field, Check::Truthy),
            Atom::Falsy(field) => (field, Check::Falsy),
            Atom::Equals(field, literal) => (field, Check::Equals(literal)),
            Atom::NotEquals(field, literal) => (field, Check::NotEquals(literal)),
        };
        Test {
            field: self.symbol(field),
            length: field == LENGTH,
            check,
            offset: Cell::new(0),
        }
    }

    /// Whether a filter candidate (`None`: a computed length) passes every test.
    fn holds(&self, tests: &[Test<'_>], item: Option<NodeId>) -> bool {
        let node = item.map(|id| self.nodes[id as usize]);
        let members = item.map_or(&[][..], |id| self.members(id));
        tests.iter().all(|test| {
            let member = match (item, node) {
                (Some(id), Some(node)) if node.kind == Kind::Object => self.find(test, id, members),
                // A list's or a string's length: a number, truthy unless 0.
                (_, Some(node))
                    if test.length && matches!(node.kind, Kind::Array | Kind::String) =>
                {
                    Some(Node::scalar(node.len > 0))
                }
                _ => None,
            };
            match test.check {
                Check::Truthy => member.is_some_and(|m| m.truthy),
                Check::Falsy => !member.is_some_and(|m| m.truthy),
                Check::Equals(literal) => self.string_equals(member, literal),
                Check::NotEquals(literal) => !self.string_equals(member, literal),
            }
        })
    }

    /// The tested member of `item` (whose members are `members`), looked for first where
    /// the previous item had it.
    fn find(&self, test: &Test<'_>, item: NodeId, members: &[Node]) -> Option<Node> {
        let key = test.field?;
        if let Some(&member) = members.get(test.offset.get())
            && member.key == key
        {
            return Some(member);
        }
        let found = self.offset_of(item, members, key)?;
        test.offset.set(found);
        Some(members[found])
    }

    /// An object's own member by key (a list's `length` and indexes are read in
    /// [`Tree::field`]; no prototype property is ever a member).
    fn member(&self, id: NodeId, key: Symbol) -> Option<NodeId> {
        let offset = self.offset_of(id, self.members(id), key)?;
        Some(self.nodes[id as usize].first + narrow(offset))
    }

    /// Where in `id`'s members (`members`) the one under `key` is.
    fn offset_of(&self, id: NodeId, members: &[Node], key: Symbol) -> Option<usize> {
        if members.len() > SCAN_MAX {
            let offset = self.wide_members.get(&(id, key))?;
            Some(*offset as usize)
        } else {
            members.iter().position(|n| n.key == key)
        }
    }

    /// The member nodes of `id`: none unless it is an object.
    fn members(&self, id: NodeId) -> &[Node] {
        let node = self.nodes[id as usize];
        match node.kind {
            Kind::Object => &self.nodes[node.span()],
            _ => &[],
        }
    }

    /// `===` against a string literal: a number never equals `'26'`.
    fn string_equals(&self, member: Option<Node>, literal: &str) -> bool {
        member.is_some_and(|node| node.kind == Kind::String && &self.text[node.span()] == literal)
    }
}

/// The index a name stands for on a list, as JavaScript reads `list['0']`: a canonical
/// decimal (`0`, `17`; never `01`, `+1` or `1.0`).
fn array_index(name: &str) -> Option<usize> {
    let canonical = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    canonical.then(|| name.parse().ok()).flatten()
}

/// Node ids, symbols and text offsets are `u32`: state files are capped at 64 MiB and the
/// values rules build are capped by the engine's limits, far below 2^32 values or bytes.
fn narrow(index: usize) -> u32 {
    u32::try_from(index).expect("a document is smaller than 4 GiB")
}
