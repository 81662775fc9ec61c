//! Parsing a GRM judgment's `\boxed{s1,s2}`: a typical judgment, a 100 kB one, and one with no
//! usable box (each is parsed for every judgment, n(n−1)/2 per group).

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use grlhf_tasks::score_parser::parse_scores;

fn bench_parse(c: &mut Criterion) {
    let typical =
        "Response A names the large circle's colour correctly and stops; response B adds \
                   a claim about a square that is not in the picture. \\boxed{8,3}";
    let long = "The first answer is better because it is shorter. ".repeat(2_000) + "\\boxed{7,4}";
    let malformed = "I cannot decide. \\boxed{1e309,nan} \\boxed{\\boxed{3,4}".repeat(20);
    let mut group = c.benchmark_group("GRM score parsing");
    for (name, text) in [
        ("typical (180 B)", typical.to_string()),
        ("long (100 kB)", long),
        ("malformed", malformed),
    ] {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_scores(black_box(&text))));
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
