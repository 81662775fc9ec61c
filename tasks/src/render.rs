//! Draws a [`Scene`] into an RGB image (in memory or PNG bytes).
//!
//! Rendering is a pure function of the scene description, so a scene stored in a JSONL record
//! redraws to exactly the PNG written beside it.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};
use imageproc::drawing::{draw_filled_circle_mut, draw_filled_rect_mut, draw_polygon_mut};
use imageproc::point::Point;
use imageproc::rect::Rect;

use crate::scene::{Scene, SceneObject, Shape};

/// The scene background. It covers about 93% of every image, so a world model's image processor
/// normalises with it as its mean: background patches then map to zero and the vision tower's
/// signal sits in the objects (with CLIP's mean every patch is nearly the same constant, and a
/// from-scratch vision tower collapses to one token — see docs/world.md).
pub const BACKGROUND_RGB: [u8; 3] = [236, 236, 232];
const BACKGROUND: Rgb<u8> = Rgb(BACKGROUND_RGB);
/// The bright core drawn inside a flame, so flames read as fire whatever their colour.
const FLAME_CORE: Rgb<u8> = Rgb([255, 245, 170]);

/// The scene as an RGB buffer.
pub fn render(scene: &Scene) -> RgbImage {
    let mut image = RgbImage::from_pixel(scene.width, scene.height, BACKGROUND);
    for object in &scene.objects {
        draw_object(&mut image, object);
    }
    image
}

/// A scene-sized image of background only: what a blind twin sees in place of every image.
pub fn render_blank(width: u32, height: u32) -> RgbImage {
    RgbImage::from_pixel(width, height, BACKGROUND)
}

/// The scene as PNG bytes (deterministic: the same scene gives the same bytes).
pub fn render_png(scene: &Scene) -> Vec<u8> {
    let mut bytes = Vec::new();
    render(scene)
        .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
        .expect("PNG encoding into memory cannot fail");
    bytes
}

fn draw_object(image: &mut RgbImage, object: &SceneObject) {
    let colour = Rgb(object.colour.rgb());
    let (x, y, r) = (object.x as i32, object.y as i32, object.radius as i32);
    match object.shape {
        Shape::Circle => draw_filled_circle_mut(image, (x, y), r, colour),
        Shape::Square => {
            let side = (2 * r * 85 / 100).max(2);
            let rect = Rect::at(x - side / 2, y - side / 2).of_size(side as u32, side as u32);
            draw_filled_rect_mut(image, rect, colour);
        }
        Shape::Triangle => polygon(
            image,
            &[(x, y - r), (x + r, y + r * 8 / 10), (x - r, y + r * 8 / 10)],
            colour,
        ),
        Shape::Diamond => polygon(
            image,
            &[
                (x, y - r),
                (x + r * 8 / 10, y),
                (x, y + r),
                (x - r * 8 / 10, y),
            ],
            colour,
        ),
        Shape::Cross => {
            let arm = (r * 2 / 5).max(1);
            draw_filled_rect_mut(
                image,
                Rect::at(x - r, y - arm / 2).of_size((2 * r) as u32, arm as u32),
                colour,
            );
            draw_filled_rect_mut(
                image,
                Rect::at(x - arm / 2, y - r).of_size(arm as u32, (2 * r) as u32),
                colour,
            );
        }
        Shape::Flame => {
            // A teardrop: a round base with a pointed tongue, and a pale core.
            let base = r * 6 / 10;
            draw_filled_circle_mut(image, (x, y + r - base), base, colour);
            polygon(
                image,
                &[
                    (x, y - r),
                    (x + base, y + r - base),
                    (x - base, y + r - base),
                ],
                colour,
            );
            let core = (base / 2).max(1);
            draw_filled_circle_mut(image, (x, y + r - base), core, FLAME_CORE);
        }
    }
}

fn polygon(image: &mut RgbImage, points: &[(i32, i32)], colour: Rgb<u8>) {
    let points: Vec<Point<i32>> = points.iter().map(|&(x, y)| Point::new(x, y)).collect();
    draw_polygon_mut(image, &points, colour);
}
