use sluice_datapath::*;
#[test]
fn loads() {
    let root = format!("/sys/fs/bpf/sluice-smoke-{}", std::process::id());
    let dp = Datapath::open_or_adopt(DatapathConfig::with_pin_root(&root)).unwrap();
    dp.uninstall().unwrap();
    assert!(!std::path::Path::new(&root).exists());
}
