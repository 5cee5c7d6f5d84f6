#compdef p2e

_p2e_completion() {
  eval $(env _TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}" _P2E_COMPLETE=complete_zsh p2e)
}

compdef _p2e_completion p2e
