//! Decision cost of `CustomSampler` against the SDK's samplers (filled in below).
use criterion::{Criterion, criterion_group, criterion_main};

fn benches(_c: &mut Criterion) {}

criterion_group!(sampler, benches);
criterion_main!(sampler);
