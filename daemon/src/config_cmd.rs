//! `passeur config check | init` and `passeur generate completions | man`.

use passeur_config::daemon::DaemonConfig;

use crate::cli::{self, Cli, ConfigCommand};
use crate::{config_errors, exit, fail};

/// `passeur generate completions SHELL | man`.
pub(crate) fn generate(g: &cli::GenerateCommand) -> u8 {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    match g {
        cli::GenerateCommand::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "passeur", &mut std::io::stdout());
            exit::OK
        }
        cli::GenerateCommand::Man => {
            match clap_mangen::Man::new(cmd).render(&mut std::io::stdout()) {
                Ok(()) => exit::OK,
                Err(e) => fail(exit::SOFTWARE, &format!("cannot write the man page: {e}")),
            }
        }
    }
}

/// `passeur config check|init`.
pub(crate) fn config_command(c: &ConfigCommand) -> u8 {
    match c {
        ConfigCommand::Init => {
            print!("{}", passeur_config::daemon::EXAMPLE);
            exit::OK
        }
        ConfigCommand::Check { file } => match DaemonConfig::load(file) {
            Ok(cfg) => {
                println!("{}: ok ({} jobs)", file.display(), cfg.jobs.len());
                exit::OK
            }
            Err(e) => config_errors(&e),
        },
    }
}
