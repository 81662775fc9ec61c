fn main() {
    grlhf_build::link_libtorch();
}
