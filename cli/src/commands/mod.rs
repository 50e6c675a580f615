//! One module per command group. Each builds a request from its arguments, makes the call and
//! prints the answer; the rules are the server's.

mod account;
mod action;
mod catalog;
mod console_login;
mod customer;
mod media;
mod node;
mod reseller;
mod service;
mod token;
mod wizard;

use crate::cli::{Cli, Command, ServiceCommand};
use crate::client::{self, Api};
use crate::config;
use crate::error::Result;
use crate::output::Output;

/// What every command gets: the connected API and how to print.
pub struct Ctx {
    pub api: Api,
    pub out: Output,
}

pub async fn run(cli: Cli) -> Result<()> {
    let out = Output {
        format: cli.global.output,
    };
    // Usage errors that need no server are reported before connecting.
    if let Command::Service(ServiceCommand::Create(args)) = &cli.command {
        wizard::precheck(args)?;
    }
    let config_path = config::config_path(&cli.global);
    let is_login = matches!(cli.command, Command::Login);
    let file = match config::load(config_path.as_deref()) {
        Ok(file) => file,
        // Logging in again is how a broken file gets replaced.
        Err(_) if is_login => None,
        Err(err) => return Err(err),
    };
    let settings = config::resolve(&cli.global, file.as_ref());
    if is_login {
        return account::login(&settings, config_path.as_deref(), out).await;
    }
    let ctx = Ctx {
        api: client::connect(&settings).await?,
        out,
    };
    match cli.command {
        // Handled above, before connecting with possibly unsaved settings.
        Command::Login => Ok(()),
        Command::Whoami => account::whoami(&ctx, &settings.endpoint).await,
        Command::Reseller(command) => reseller::run(&ctx, command).await,
        Command::Customer(command) => customer::run(&ctx, command).await,
        Command::Token(command) => token::run(&ctx, command).await,
        Command::ConsoleLogin(command) => console_login::run(&ctx, command).await,
        Command::Catalog(command) => catalog::run(&ctx, command).await,
        Command::Usage(filter) => catalog::usage(&ctx, filter).await,
        Command::Service(ServiceCommand::Create(args)) => wizard::create(&ctx, args).await,
        Command::Service(command) => service::run(&ctx, command).await,
        Command::Action(command) => action::run(&ctx, command).await,
        Command::Node(command) => node::run(&ctx, command).await,
        Command::Media(command) => media::run_media(&ctx, command).await,
        Command::Video(command) => media::run_video(&ctx, command).await,
    }
}
