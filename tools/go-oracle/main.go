// go-oracle reads request bodies framed on stdin and answers, one line
// each, what Ollama's decoding (Go's encoding/json into Ollama's request
// structs, through gin's ShouldBindJSON) and the checks its handlers and
// OpenAI middleware make before the model lookup decide:
//
//	E <TAB> status <TAB> quoted error text
//	M <TAB> quoted model string <TAB> input-type-bad (0/1)
//
// A record is one byte naming the route (see routes), four bytes of
// little-endian length, then the body. Used by scripts/fuzz-go-oracle.sh
// against the filter's body scanner; not part of CI.
package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"ollama-lb/go-oracle/api"
	"ollama-lb/go-oracle/openai"
)

// Route numbers, shared with filter/examples/fuzz_oracle.rs.
const (
	generate = iota
	chat
	embed
	embeddings
	show
	push
	del
	cpy
	oaChat
	oaCompletions
	oaEmbeddings
)

type verdict struct {
	err      string // empty: decoded and checked
	model    string
	badInput bool
}

func bad(msg string) verdict { return verdict{err: msg} }

// bind is gin's ShouldBindJSON: the first JSON value only.
func bind(body []byte, v any) error {
	return json.NewDecoder(bytes.NewReader(body)).Decode(v)
}

// native is a native handler's answer to a decode error.
func native(err error) verdict {
	if errors.Is(err, io.EOF) {
		return bad("missing request body")
	}
	return bad(err.Error())
}

func topLogprobs(n int) bool { return n < 0 || n > 20 }

func judge(route byte, body []byte) verdict {
	switch route {
	case generate:
		var r api.GenerateRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		if topLogprobs(r.TopLogprobs) {
			return bad("top_logprobs must be between 0 and 20")
		}
		return verdict{model: r.Model}
	case chat:
		var r api.ChatRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		if topLogprobs(r.TopLogprobs) {
			return bad("top_logprobs must be between 0 and 20")
		}
		return verdict{model: r.Model}
	case embed:
		var r api.EmbedRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		badInput := false
		switch r.Input.(type) {
		case string, []any, nil:
		default:
			badInput = true
		}
		return verdict{model: r.Model, badInput: badInput}
	case embeddings:
		var r api.EmbeddingRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		return verdict{model: r.Model}
	case show:
		var r api.ShowRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		return verdict{model: cmp.Or(r.Model, r.Name)}
	case push:
		var r api.PushRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		return verdict{model: cmp.Or(r.Model, r.Name)}
	case del:
		var r api.DeleteRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		return verdict{model: cmp.Or(r.Model, r.Name)}
	case cpy:
		var r api.CopyRequest
		if err := bind(body, &r); err != nil {
			return native(err)
		}
		return verdict{model: r.Source}
	}
	return judgeOpenAI(route, body)
}

func judgeOpenAI(route byte, body []byte) verdict {
	switch route {
	case oaChat:
		var r openai.ChatCompletionRequest
		if err := bind(body, &r); err != nil {
			return bad(err.Error())
		}
		if len(r.Messages) == 0 {
			return bad("[] is too short - 'messages'")
		}
		if msg := contentError(r.Messages); msg != "" {
			return bad(msg)
		}
		if topLogprobs(r.TopLogprobs) {
			return bad("top_logprobs must be between 0 and 20")
		}
		return verdict{model: r.Model}
	case oaCompletions:
		var r openai.CompletionRequest
		if err := bind(body, &r); err != nil {
			return bad(err.Error())
		}
		return verdict{model: r.Model}
	case oaEmbeddings:
		var r openai.EmbedRequest
		if err := bind(body, &r); err != nil {
			return bad(err.Error())
		}
		f := r.EncodingFormat
		if f != "" && !strings.EqualFold(f, "float") && !strings.EqualFold(f, "base64") {
			return bad(fmt.Sprintf("Invalid value for 'encoding_format' = %s. Supported values: ['float', 'base64'].", f))
		}
		if r.Input == "" {
			r.Input = []string{""}
		}
		if v, ok := r.Input.([]any); r.Input == nil || (ok && len(v) == 0) {
			return bad("invalid input")
		}
		// EmbedHandler behind the middleware checks the type.
		badInput := false
		switch r.Input.(type) {
		case string, []any, []string:
		default:
			badInput = true
		}
		return verdict{model: r.Model, badInput: badInput}
	}
	return bad("unknown route")
}

// contentError is openai.FromChatRequest's check of each message's
// content, in order: a string, or an array of typed parts (keys matched
// exactly, as in any map); anything else only beside tool calls.
func contentError(messages []openai.Message) string {
	for _, msg := range messages {
		switch content := msg.Content.(type) {
		case string:
		case []any:
			for _, c := range content {
				if !partOK(c) {
					return "invalid message format"
				}
			}
		default:
			if msg.ToolCalls == nil {
				return fmt.Sprintf("invalid message content type: %T", content)
			}
		}
	}
	return ""
}

func partOK(c any) bool {
	data, ok := c.(map[string]any)
	if !ok {
		return false
	}
	switch data["type"] {
	case "text":
		_, ok := data["text"].(string)
		return ok
	case "image_url":
		if urlMap, ok := data["image_url"].(map[string]any); ok {
			_, ok := urlMap["url"].(string)
			return ok
		}
		_, ok := data["image_url"].(string)
		return ok
	case "input_audio":
		_, ok := data["input_audio"].(map[string]any)
		return ok
	}
	return false
}

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<20)
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	var head [5]byte
	var body []byte
	for {
		if _, err := io.ReadFull(in, head[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(head[1:])
		if cap(body) < int(n) {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(in, body); err != nil {
			return
		}
		v := judge(head[0], body)
		if v.err != "" {
			out.WriteString("E\t400\t" + strconv.Quote(v.err) + "\n")
		} else {
			b := "0"
			if v.badInput {
				b = "1"
			}
			out.WriteString("M\t" + strconv.Quote(v.model) + "\t" + b + "\n")
		}
		if in.Buffered() == 0 {
			out.Flush()
		}
	}
}
