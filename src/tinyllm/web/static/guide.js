// The guide's words: one entry per view of the page, in the order the tour walks them.
// A teacher may change any of this text; the page reads nothing else from here. A task's own views
// (the Fourier spectrum, per-digit accuracy) bring their words from the task, through the API.
//   title   the view's name in the tour
//   what    what the numbers are (2-4 sentences)
//   notice  what to look for
//   try     things to click
"use strict";

const GUIDE = {
  runs: {
    title: "Runs and their curves",
    what: "Every run in the served folder, and the curves of the one you pick. Train loss is measured on each step's batch; test loss on text the model never trains on, at each evaluation. A loss is the average surprise in nats per token: ln(vocabulary size) for a model that guesses uniformly, 0 for one that is always sure and right.",
    notice: "The loss falls fastest in the first few percent of the steps. Dashed lines are counting baselines (n-gram models of the same text): the step where the test loss crosses one is where the network starts to beat counting.",
    try: "Click a run. While a run trains in another terminal, its curves and its steps grow here every two seconds.",
  },
  generate: {
    title: "Generate",
    what: "The model continues your prompt one token at a time. At each step it gives every token of its vocabulary a probability, the sampler settings reshape that distribution, and one token is drawn from what is left.",
    notice: "Temperature 0 always takes the most likely token, so the same prompt gives the same text. With a seed, sampling repeats exactly too.",
    try: "Generate with temperature 0, then 0.8, then 1.5. Set top-k to 1 and compare it with temperature 0.",
  },
  steps: {
    title: "Step slider: watch it learn",
    what: "Training kept the model's weights at moments along the way (snapshots, denser early where most changes). The slider picks one: the next-token, attention, logit-lens and embedding views then show that model, and the loss chart marks its step.",
    notice: "In the first snapshots every head spreads its attention evenly and the model guesses from the current letter alone. The loss then sits on a plateau, until heads turn to the previous few letters and it falls again: the slider shows you when.",
    try: "Inspect a prompt, then press play and watch the views change step by step. Drag the slider back to the first snapshot and compare.",
  },
  next_token: {
    title: "Next token",
    what: "For the position you click, the model's candidates for the token that comes after it. Each column is their probability after one more stage of the sampler: the raw softmax, then repetition penalty, temperature, top-k, top-p and min-p, in that order.",
    notice: "Inside a word the model is often nearly sure; after a space or a line break the probability spreads over many tokens. Filters cut the tail, and what is left is renormalised.",
    try: "Click different positions of the prompt. Lower the temperature or set top-p to 0.5 and inspect again: watch tokens get removed.",
  },
  attention: {
    title: "Attention",
    what: "Each head of each layer mixes information from earlier positions into the current one. For the selected position, the shading shows how much of its attention each earlier token gets; the grids below show every head's whole pattern (rows: the query position, columns: the key position).",
    notice: "Look for a head whose grid is a bright line just below the diagonal: it attends to the previous token. Others look back to the start of the word, or to the last space or line break.",
    try: "Click the last letter of a word, then the space after it, and compare the heads. Move the step slider to the first snapshots: the patterns start out blurred.",
  },
  logit_lens: {
    title: "Logit lens",
    what: "The residual stream after the embeddings and after each block, read through the final LayerNorm and the output layer as if the model stopped there. Each cell is that layer's top prediction for the next token at that position, shaded by its probability.",
    notice: "The row after the embeddings mostly names the token it stands on: the output layer is the embedding matrix itself (weights are tied), so a token's own vector reads back as that token. Each block moves the guess towards the next token; the last row is the model's real prediction.",
    try: "Find a position where the first row is wrong and the last is right. Play the step slider and watch the rows grow confident.",
  },
  embeddings: {
    title: "Embeddings",
    what: "Each token's embedding vector projected to two dimensions (principal component analysis): tokens the model treats alike land close together. Only two of the many directions are shown, so distances are rough.",
    notice: "At the first snapshot the points are a random cloud. Later, vowels, consonants, capitals, digits and punctuation drift into groups of their own.",
    try: "Move the step slider from the first snapshot to the last and watch the clusters form.",
  },
};

const TOUR = ["runs", "generate", "steps", "next_token", "attention", "logit_lens", "embeddings"];
