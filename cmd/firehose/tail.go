package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/firehose/firehose/pullapi"
)

func newTailCmd(g *globals) *cobra.Command {
	var o pullapi.FollowOptions
	cmd := &cobra.Command{
		Use:   "tail --url URL --token TOKEN [--position P] [--position-file F]",
		Short: "Follow the pull API and print each event as a line of JSON",
		Long: `tail pulls pages from a Firehose pull API (GET /v1/stream) and prints every
event's data as one line of JSON on stdout, until interrupted.

With --position-file it saves the position after each page has been printed
and resumes from it on the next start: nothing is missed, and after a crash at
most the last page is printed again (at-least-once). --position (tail, top or
a position token; default tail) is where to start when the file holds no
position yet; given explicitly it overrides the file.

Network errors, 429 and 5xx answers are retried with backoff on the same
position; 401, 403, 400 and 410 end the command with the server's message.`,
		Example: `  firehose tail --url http://127.0.0.1:8080 --token dev-acc_1
  firehose tail --url https://firehose.example.com --token "$TOKEN" --position-file acc_1.pos > events.ndjson`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			if o.URL == "" || o.Token == "" {
				return fmt.Errorf("--url and --token are required")
			}
			if o.Limit < 1 || o.Limit > pullapi.MaxLimit {
				return fmt.Errorf("--limit must be 1 to %d, got %d", pullapi.MaxLimit, o.Limit)
			}
			o.Override = cmd.Flags().Changed("position")
			o.Out, o.Log = cmd.OutOrStdout(), log
			return pullapi.Follow(cmd.Context(), o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "base URL of the API, e.g. http://127.0.0.1:8080")
	f.StringVar(&o.Token, "token", os.Getenv("FIREHOSE_TOKEN"), "bearer token (default $FIREHOSE_TOKEN)")
	f.StringVar(&o.Position, "position", "tail", "where to start: tail, top or a position token")
	f.StringVar(&o.PositionFile, "position-file", "", "file to resume from and to save the position to after each page")
	f.IntVar(&o.Limit, "limit", pullapi.DefaultLimit, "events per page (1-100)")
	f.BoolVar(&o.UntilTop, "until-top", false, "exit once the head of the stream is reached")
	return cmd
}

func newTokenCmd(_ *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make pull API tokens",
	}
	var account string
	newCmd := &cobra.Command{
		Use:   "new --account ACCOUNT",
		Short: "Print a new random token and the config entry that grants it one account",
		Long: `token new prints a fresh random token for the pull API, and the entry to add
under api.tokens (or to api.tokens_file, which is reloaded without a restart).
The config keeps only the token's SHA-256; give the token itself to the client
and keep no other copy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if account == "" {
				return fmt.Errorf("--account is required")
			}
			token, hash := pullapi.NewToken()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "token (give to the client; it is not stored anywhere):\n  %s\n\n", token)
			fmt.Fprintf(w, "config entry (api.tokens or the tokens file):\n  - account: %s\n    sha256: %s\n", account, hash)
			return nil
		},
	}
	newCmd.Flags().StringVar(&account, "account", "", "the account the token may read")
	cmd.AddCommand(newCmd)
	return cmd
}
