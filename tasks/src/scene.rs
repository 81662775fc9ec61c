//! Scenes of the embedded world: 1–6 coloured shapes on a 3×3 grid.
//!
//! A [`Scene`] is a complete, serialisable description — every object's shape, colour, size,
//! grid cell and pixel geometry — so that rendering is a pure function of it and the oracle can
//! score answers against it long after the image was written. Objects sit in distinct cells, which
//! keeps "where is" and "left of" questions unambiguous.

use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Object shapes. `Flame` is the world's hazard: asking how to pick one up is unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Flame,
}

impl Shape {
    pub const ALL: [Shape; 6] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
        Shape::Flame,
    ];
    /// Shapes that are safe to handle.
    pub const SAFE: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Shape::Circle => "circle",
            Shape::Square => "square",
            Shape::Triangle => "triangle",
            Shape::Diamond => "diamond",
            Shape::Cross => "cross",
            Shape::Flame => "flame",
        }
    }

    pub fn plural(self) -> &'static str {
        match self {
            Shape::Circle => "circles",
            Shape::Square => "squares",
            Shape::Triangle => "triangles",
            Shape::Diamond => "diamonds",
            Shape::Cross => "crosses",
            Shape::Flame => "flames",
        }
    }

    /// The shape named by `word`, singular or plural.
    pub fn from_word(word: &str) -> Option<Shape> {
        Shape::ALL
            .into_iter()
            .find(|s| s.word() == word || s.plural() == word)
    }

    pub fn is_hazard(self) -> bool {
        self == Shape::Flame
    }
}

/// Object colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
}

impl Colour {
    pub const ALL: [Colour; 6] = [
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Purple,
        Colour::Orange,
    ];
    /// Flames come only in fire colours, so a flame always looks like one.
    pub const FLAME: [Colour; 3] = [Colour::Red, Colour::Orange, Colour::Yellow];

    pub fn word(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }

    pub fn from_word(word: &str) -> Option<Colour> {
        Colour::ALL.into_iter().find(|c| c.word() == word)
    }

    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 40, 40],
            Colour::Green => [40, 160, 60],
            Colour::Blue => [40, 80, 220],
            Colour::Yellow => [235, 205, 30],
            Colour::Purple => [140, 60, 190],
            Colour::Orange => [245, 135, 30],
        }
    }

    /// The article before this colour word ("an orange circle").
    pub fn article(self) -> &'static str {
        match self {
            Colour::Orange => "an",
            _ => "a",
        }
    }
}

/// Object sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    pub fn word(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }
}

/// Grid rows, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Row {
    Top,
    Middle,
    Bottom,
}

/// Grid columns, left to right.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Column {
    Left,
    Center,
    Right,
}

impl Row {
    pub const ALL: [Row; 3] = [Row::Top, Row::Middle, Row::Bottom];
    pub fn word(self) -> &'static str {
        match self {
            Row::Top => "top",
            Row::Middle => "middle",
            Row::Bottom => "bottom",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

impl Column {
    pub const ALL: [Column; 3] = [Column::Left, Column::Center, Column::Right];
    pub fn word(self) -> &'static str {
        match self {
            Column::Left => "left",
            Column::Center => "center",
            Column::Right => "right",
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// One cell of the 3×3 grid, named "top left", "middle center", …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Cell {
    pub row: Row,
    pub column: Column,
}

impl Cell {
    pub fn all() -> impl Iterator<Item = Cell> {
        Row::ALL.into_iter().flat_map(|row| {
            Column::ALL
                .into_iter()
                .map(move |column| Cell { row, column })
        })
    }

    pub fn name(self) -> String {
        format!("{} {}", self.row.word(), self.column.word())
    }

    /// Row-major reading order (top row first, left to right).
    pub fn reading_index(self) -> usize {
        self.row.index() * 3 + self.column.index()
    }
}

/// One object in a scene, with the pixel geometry it is drawn with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SceneObject {
    pub shape: Shape,
    pub colour: Colour,
    pub size: Size,
    pub cell: Cell,
    /// Centre in pixels.
    pub x: u32,
    pub y: u32,
    /// Half the extent of the object's bounding box, in pixels.
    pub radius: u32,
}

impl SceneObject {
    /// "red circle".
    pub fn kind(&self) -> (Colour, Shape) {
        (self.colour, self.shape)
    }

    pub fn describe(&self) -> String {
        format!("{} {}", self.colour.word(), self.shape.word())
    }
}

/// A generated picture: its size and its objects, in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scene {
    pub width: u32,
    pub height: u32,
    pub objects: Vec<SceneObject>,
}

/// How scenes are drawn from the random stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SceneConfig {
    /// Image width and height in pixels (square images).
    pub image_size: u32,
    pub min_objects: usize,
    pub max_objects: usize,
    /// Probability that an object is a flame (the hazard).
    pub flame_probability: f64,
}

impl Default for SceneConfig {
    fn default() -> Self {
        SceneConfig {
            image_size: 112,
            min_objects: 1,
            max_objects: 6,
            flame_probability: 0.08,
        }
    }
}

/// Which (colour, shape) combinations a scene may or must contain.
#[derive(Debug, Clone, Copy)]
pub enum ComboRule<'a> {
    /// Any combination.
    Any,
    /// None of these (training-side splits).
    Exclude(&'a [(Colour, Shape)]),
    /// At least one object of these (the held-out-combination split); no restriction otherwise.
    RequireOneOf(&'a [(Colour, Shape)]),
}

impl SceneConfig {
    /// Checks the values a user can set; `Err` names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(28..=1024).contains(&self.image_size) {
            return Err(format!(
                "image_size = {} is outside 28..=1024 pixels",
                self.image_size
            ));
        }
        if self.min_objects == 0 || self.min_objects > self.max_objects || self.max_objects > 6 {
            return Err(format!(
                "min_objects = {}, max_objects = {}: need 1 <= min_objects <= max_objects <= 6 \
                 (objects occupy distinct cells of a 3x3 grid, at most 6 of them)",
                self.min_objects, self.max_objects
            ));
        }
        if !(0.0..=1.0).contains(&self.flame_probability) {
            return Err(format!(
                "flame_probability = {} is outside [0, 1]",
                self.flame_probability
            ));
        }
        Ok(())
    }

    /// Draws one scene. The combination rule is met by construction (never by rejection), so this
    /// always returns.
    pub fn sample(&self, rng: &mut impl Rng, combos: ComboRule<'_>) -> Scene {
        let count = rng.random_range(self.min_objects..=self.max_objects);
        let mut cells: Vec<Cell> = Cell::all().collect();
        cells.shuffle(rng);
        cells.truncate(count);
        cells.sort_by_key(|c| c.reading_index());
        let required = match combos {
            ComboRule::RequireOneOf(list) if !list.is_empty() => Some((
                rng.random_range(0..cells.len()),
                list[rng.random_range(0..list.len())],
            )),
            _ => None,
        };
        let objects = cells
            .into_iter()
            .enumerate()
            .map(|(i, cell)| {
                let (colour, shape) = match required {
                    Some((index, combo)) if index == i => combo,
                    _ => self.sample_kind(rng, combos),
                };
                self.place(rng, cell, colour, shape)
            })
            .collect();
        Scene {
            width: self.image_size,
            height: self.image_size,
            objects,
        }
    }

    fn sample_kind(&self, rng: &mut impl Rng, combos: ComboRule<'_>) -> (Colour, Shape) {
        if rng.random_bool(self.flame_probability) {
            let colour = Colour::FLAME[rng.random_range(0..Colour::FLAME.len())];
            return (colour, Shape::Flame);
        }
        let excluded: &[(Colour, Shape)] = match combos {
            ComboRule::Exclude(list) => list,
            _ => &[],
        };
        let allowed: Vec<(Colour, Shape)> = Colour::ALL
            .into_iter()
            .flat_map(|c| Shape::SAFE.into_iter().map(move |s| (c, s)))
            .filter(|kind| !excluded.contains(kind))
            .collect();
        allowed[rng.random_range(0..allowed.len())]
    }

    /// Puts an object of the given kind in `cell`, with a random size and a jittered centre.
    pub fn place(
        &self,
        rng: &mut impl Rng,
        cell: Cell,
        colour: Colour,
        shape: Shape,
    ) -> SceneObject {
        let size = Size::ALL[rng.random_range(0..2)];
        let cell_px = self.image_size / 3;
        let radius = match size {
            Size::Small => (cell_px * 22 / 100).max(3),
            Size::Large => (cell_px * 40 / 100).max(5),
        };
        let slack = (cell_px / 2).saturating_sub(radius + 1);
        let jitter = |rng: &mut dyn rand::RngCore| -> i64 {
            if slack == 0 {
                0
            } else {
                rng.random_range(-(slack as i64)..=slack as i64)
            }
        };
        let cx = (cell.column.index() as u32 * cell_px + cell_px / 2) as i64 + jitter(rng);
        let cy = (cell.row.index() as u32 * cell_px + cell_px / 2) as i64 + jitter(rng);
        SceneObject {
            shape,
            colour,
            size,
            cell,
            x: cx as u32,
            y: cy as u32,
            radius,
        }
    }
}

impl Scene {
    pub fn object_at(&self, cell: Cell) -> Option<&SceneObject> {
        self.objects.iter().find(|o| o.cell == cell)
    }

    pub fn contains(&self, colour: Colour, shape: Shape) -> bool {
        self.objects.iter().any(|o| o.kind() == (colour, shape))
    }

    /// Objects whose (colour, shape) appears once, so "the red circle" names exactly one object.
    pub fn uniquely_described(&self) -> Vec<&SceneObject> {
        self.objects
            .iter()
            .filter(|o| self.objects.iter().filter(|p| p.kind() == o.kind()).count() == 1)
            .collect()
    }

    /// Distinct (colour, shape) kinds with their counts, in reading order of first appearance.
    pub fn kinds_with_counts(&self) -> Vec<((Colour, Shape), usize)> {
        let mut kinds: Vec<((Colour, Shape), usize)> = Vec::new();
        for object in &self.objects {
            match kinds.iter_mut().find(|(k, _)| *k == object.kind()) {
                Some((_, count)) => *count += 1,
                None => kinds.push((object.kind(), 1)),
            }
        }
        kinds
    }

    /// Checks a scene read back from a file (the oracle trusts what it scores against).
    pub fn validate(&self) -> Result<(), String> {
        if self.width == 0 || self.height == 0 || self.width > 4096 || self.height > 4096 {
            return Err(format!(
                "scene size {}x{} is outside 1..=4096",
                self.width, self.height
            ));
        }
        if self.objects.is_empty() || self.objects.len() > 9 {
            return Err(format!(
                "scene has {} objects; need 1..=9",
                self.objects.len()
            ));
        }
        for (i, o) in self.objects.iter().enumerate() {
            if self.objects[..i].iter().any(|p| p.cell == o.cell) {
                return Err(format!("two objects share the cell {}", o.cell.name()));
            }
        }
        Ok(())
    }
}
