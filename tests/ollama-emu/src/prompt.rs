//! Prompt evaluation: how many tokens a request's prompt has, and each
//! loaded model's per-slot prompt cache, after Ollama's runner
//! (`runner/ollamarunner/cache.go`, `LoadCacheSlot` and
//! `findLongestCacheSlot`, read at commit 9db4bdbad^; our own code).
//!
//! The rendered prompt is what a template would roughly produce: each
//! chat message as `role\ncontent\n`, in order; generate's `system` and
//! `prompt` as a `system` and a `user` message; an embed input alone.
//! Its token count is its byte length / 4, rounded up, at least 1 (the
//! usual rule of thumb for English text with a BPE vocabulary), so a
//! common prefix of `n` bytes is `n / 4` cached tokens.
//!
//! Each of a runner's `NUM_PARALLEL` slots remembers the last prompt it
//! evaluated. A request takes the free slot whose prompt shares the
//! longest prefix with its own, reuses that prefix and evaluates only the
//! rest; at least one token is always evaluated (Ollama leaves one to
//! sample from). Embeddings do not reuse the cache (`cachePrompt` false),
//! and clear the slot they use. Ollama also keeps the generated reply in
//! the slot; the emulator keeps the prompt only, so the next turn of a
//! conversation re-evaluates the previous reply (a few tokens).

use serde_json::Value;

/// Bytes per emulated token.
const BYTES_PER_TOKEN: usize = 4;

/// A request's rendered prompt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    text: Vec<u8>,
    /// Reuse (and keep) the slot's cache; false for embeddings.
    reuse_cache: bool,
}

impl Prompt {
    /// A chat's `messages`: `role\ncontent\n` for each, in order.
    pub fn chat(messages: &[Value]) -> Self {
        let mut text = Vec::new();
        for m in messages {
            let field = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("");
            push_message(&mut text, field("role"), field("content"));
        }
        Prompt {
            text,
            reuse_cache: true,
        }
    }

    /// Generate's `system` (if any) then `prompt`, as chat messages.
    pub fn generate(system: &str, prompt: &str) -> Self {
        let mut text = Vec::new();
        if !system.is_empty() {
            push_message(&mut text, "system", system);
        }
        push_message(&mut text, "user", prompt);
        Prompt {
            text,
            reuse_cache: true,
        }
    }

    /// Embedding inputs, one after another; never cached.
    pub fn embed(inputs: &[String]) -> Self {
        Prompt {
            text: inputs.concat().into_bytes(),
            reuse_cache: false,
        }
    }

    /// No prompt at all (a load request).
    pub fn empty() -> Self {
        Prompt::default()
    }

    /// Tokens of the whole prompt (0 for an empty one).
    pub fn tokens(&self) -> u64 {
        tokens_of(self.text.len())
    }
}

fn push_message(text: &mut Vec<u8>, role: &str, content: &str) {
    text.extend_from_slice(role.as_bytes());
    text.push(b'\n');
    text.extend_from_slice(content.as_bytes());
    text.push(b'\n');
}

fn tokens_of(bytes: usize) -> u64 {
    bytes.div_ceil(BYTES_PER_TOKEN) as u64
}

/// What one request's prompt cost on its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptUse {
    /// Which cache slot it holds.
    pub slot: usize,
    /// Tokens of the whole prompt (`prompt_eval_count`).
    pub total: u64,
    /// Tokens to evaluate now (the rest came from the cache).
    pub evaluated: u64,
}

#[derive(Debug, Default)]
struct CacheSlot {
    text: Vec<u8>,
    in_use: bool,
}

/// One runner's cache slots.
#[derive(Debug, Default)]
pub struct PromptCache {
    slots: Vec<CacheSlot>,
}

impl PromptCache {
    /// Takes the free slot with the longest common prefix (the first such
    /// on ties), growing to `num_parallel` slots as needed. `None` if all
    /// `num_parallel` slots are in use.
    pub fn take(&mut self, prompt: &Prompt, num_parallel: usize) -> Option<PromptUse> {
        while self.slots.len() < num_parallel {
            self.slots.push(CacheSlot::default());
        }
        let (slot, common) = self
            .slots
            .iter()
            .enumerate()
            .take(num_parallel.max(1))
            .filter(|(_, s)| !s.in_use)
            .map(|(i, s)| (i, common_prefix(&s.text, &prompt.text)))
            .fold(None, |best: Option<(usize, usize)>, (i, n)| match best {
                Some((_, b)) if b >= n => best,
                _ => Some((i, n)),
            })?;
        let cache_slot = self.slots.get_mut(slot)?;
        cache_slot.in_use = true;
        let total = prompt.tokens();
        let cached = if prompt.reuse_cache {
            tokens_of_prefix(common).min(total.saturating_sub(1))
        } else {
            0
        };
        if !prompt.reuse_cache {
            cache_slot.text.clear();
        } else if !prompt.text.is_empty() {
            // A load request (no prompt) leaves the slot's cache alone.
            cache_slot.text.clone_from(&prompt.text);
        }
        Some(PromptUse {
            slot,
            total,
            evaluated: total - cached,
        })
    }

    /// Frees a slot taken by [`PromptCache::take`]; its prompt stays.
    pub fn release(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.in_use = false;
        }
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Whole tokens inside a common prefix of `bytes`.
fn tokens_of_prefix(bytes: usize) -> u64 {
    (bytes / BYTES_PER_TOKEN) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn turns(n: usize) -> Prompt {
        let mut messages = vec![json!({"role": "system", "content": "s".repeat(400)})];
        for i in 0..n {
            messages.push(
                json!({"role": "user", "content": format!("question {i} {}", "q".repeat(100))}),
            );
            messages.push(json!({"role": "assistant", "content": "a".repeat(100)}));
        }
        Prompt::chat(&messages)
    }

    #[test]
    fn tokens_are_rendered_bytes_over_four() {
        assert_eq!(
            Prompt::generate("", "hi").tokens(),
            2,
            "user\\nhi\\n: 8 bytes"
        );
        assert_eq!(
            Prompt::generate("be", "hi").tokens(),
            5,
            "system\\nbe\\nuser\\nhi\\n"
        );
        let chat = Prompt::chat(&[json!({"role": "user", "content": "hi"})]);
        assert_eq!(chat, Prompt::generate("", "hi"));
        assert_eq!(Prompt::embed(&["abcde".into()]).tokens(), 2);
        assert_eq!(Prompt::empty().tokens(), 0);
    }

    #[test]
    fn the_next_turn_evaluates_only_what_is_new() {
        let mut cache = PromptCache::default();
        let first = cache.take(&turns(1), 1).expect("free slot");
        assert_eq!(first.evaluated, first.total, "a cold slot evaluates all");
        cache.release(first.slot);
        let second = cache.take(&turns(2), 1).expect("free slot");
        assert_eq!(second.total - second.evaluated, first.total);
        cache.release(second.slot);
        let again = cache.take(&turns(2), 1).expect("free slot");
        assert_eq!(
            again.evaluated, 1,
            "the same prompt still samples one token"
        );
    }

    #[test]
    fn a_request_takes_the_free_slot_with_the_longest_prefix() {
        let mut cache = PromptCache::default();
        let other = Prompt::generate("", &"x".repeat(800));
        let a = cache.take(&turns(1), 2).expect("slot");
        let b = cache.take(&other, 2).expect("slot");
        assert!(cache.take(&other, 2).is_none(), "both slots busy");
        cache.release(b.slot);
        cache.release(a.slot);
        let next = cache.take(&turns(3), 2).expect("slot");
        assert_eq!(next.slot, a.slot);
        let busy = cache.take(&turns(3), 2).expect("slot");
        assert_eq!(busy.slot, b.slot, "the best slot is busy: the other one");
        assert_eq!(busy.evaluated, busy.total);
    }

    #[test]
    fn embeddings_neither_reuse_nor_keep_the_cache() {
        let mut cache = PromptCache::default();
        let input = vec!["y".repeat(400)];
        let first = cache.take(&Prompt::embed(&input), 1).expect("slot");
        cache.release(first.slot);
        let second = cache.take(&Prompt::embed(&input), 1).expect("slot");
        assert_eq!(second.evaluated, 100);
    }
}
