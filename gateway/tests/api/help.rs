//! `--help` names every variable and shows no credential the environment holds: a shell's
//! `REDIS_URL` with its password must not reach a terminal recording or a CI log.

#[test]
fn help_shows_no_password_or_secret_from_the_environment() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--help")
        .env("REDIS_URL", "redis://:hunter2-in-the-url@redis:6379")
        .env("JWT_SECRET", "hunter2-jwt-secret-from-the-environment")
        .env("ADMIN_TOKEN", "hunter2-admin-token-from-the-environment")
        .output()
        .expect("the gateway binary runs");
    let help = String::from_utf8(output.stdout).expect("help is text");
    assert!(output.status.success(), "{help}");
    assert!(help.contains("REDIS_URL"), "{help}");
    assert!(!help.contains("hunter2"), "{help}");
}
